import pytest
import torch

from salbook import nets
from salbook.methods import baselines


@pytest.fixture
def linear(linear_model):
    torch.manual_seed(0)
    return linear_model(torch.randn(3, 12), torch.zeros(3))


@pytest.mark.parametrize("name, expected", [
    ("gradient", lambda x, w: w.expand_as(x)),
    ("guided_backprop", lambda x, w: w.expand_as(x)),  # no ReLU: plain gradient
    ("smoothgrad", lambda x, w: w.expand_as(x)),  # the gradient of a linear model is constant
    ("input_x_gradient", lambda x, w: x * w),
    ("integrated_gradients", lambda x, w: x * w),  # completeness from the black baseline
    ("deeplift", lambda x, w: x * w),
    ("lrp", lambda x, w: x * w),  # ε-rule on a bias-free linear layer
    ("occlusion", lambda x, w: x * w),  # a 1-pixel window over the 3 channels... see below
])
def test_known_answers_on_a_linear_model(linear, name, expected):
    x = torch.rand(2, 3, 2, 2)
    target = torch.tensor([1, 2])
    options = {"window": 1} if name == "occlusion" else {}
    maps = baselines.make(name, linear, **options).attribute(x, target)
    w = linear.fc.weight[target].detach().view(2, 3, 2, 2)
    want = expected(x, w)
    if name == "occlusion":  # the window covers all channels of a pixel: each channel gets the pixel's total
        want = want.sum(1, keepdim=True).expand_as(x)
    assert maps.shape == x.shape
    assert torch.allclose(maps, want, atol=1e-4), name


@pytest.mark.parametrize("name", baselines.NAMES)
def test_every_method_runs_on_a_zoo_architecture(name):
    model = nets.build("cifar_vgg16_bn").eval()
    x = torch.rand(2, 3, 32, 32)
    options = {"samples": 2} if name in ("smoothgrad", "smoothgrad_sq", "vargrad") else {}
    if name == "integrated_gradients":
        options = {"n_steps": 4}
    if name == "occlusion":
        options = {"window": 8, "stride": 8}  # 16 windows, not 961
    maps = baselines.make(name, model, **options).attribute(x, target=3)
    assert maps.shape == x.shape and torch.isfinite(maps).all()


def test_vargrad_is_the_variance_and_sg_sq_is_non_negative(linear):
    x = torch.rand(2, 3, 2, 2)
    assert torch.allclose(baselines.make("vargrad", linear).attribute(x, 0), torch.zeros_like(x), atol=1e-6)
    assert (baselines.make("smoothgrad_sq", linear).attribute(x, 0) >= 0).all()


def test_unknown_method_and_bad_input(linear):
    with pytest.raises(ValueError, match="unknown attribution method"):
        baselines.make("magic", linear)
    with pytest.raises(ValueError, match="lie in"):
        baselines.make("gradient", linear).attribute(torch.full((1, 3, 2, 2), 3.0), 0)


def test_gradcam_of_an_averaging_network_is_the_scaled_activation():
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    torch.nn.init.ones_(conv.weight)
    model = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()  # logit = mean(x)
    x = torch.rand(2, 1, 4, 4)
    # α = mean of ∂y/∂A = 1/16 per channel, so Grad-CAM = ReLU(A / 16) = x / 16
    assert torch.allclose(baselines.make("gradcam", model).attribute(x, 0), x / 16, atol=1e-6)
    with pytest.raises(ValueError, match="convolutional layer"):
        baselines.make("gradcam", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)))


def test_excitation_backprop_on_a_linear_model_is_the_share_of_positive_contributions(linear):
    # one layer, inputs ≥ 0: MWP(x_i) = x_i w_ti⁺ / Σ_k x_k w_tk⁺ (Zhang et al. 2018, eq. 5)
    x = torch.rand(2, 3, 2, 2)
    target = torch.tensor([1, 2])
    maps = baselines.make("excitation_backprop", linear).attribute(x, target)
    contrib = x.flatten(1) * linear.fc.weight[target].detach().clamp(min=0)
    assert maps.shape == x.shape
    assert torch.allclose(maps.flatten(1), contrib / contrib.sum(1, keepdim=True), atol=1e-5)


def test_excitation_backprop_matches_a_hand_computed_two_layer_relu_net():
    torch.manual_seed(0)
    w1, w2 = torch.randn(5, 6), torch.randn(3, 5)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).eval()
    with torch.no_grad():
        model[1].weight.copy_(w1), model[3].weight.copy_(w2)
        model[1].bias.fill_(0.3), model[3].bias.fill_(-0.2)  # biases take no part in the MWP
    x = torch.rand(4, 1, 2, 3)
    flat, t = x.flatten(1), 2
    h = torch.relu(flat @ w1.T + 0.3)
    p_hidden = h * w2[t].clamp(min=0)
    p_hidden = p_hidden / p_hidden.sum(1, keepdim=True).clamp(min=1e-12)  # one parent: the target
    share = flat[:, None, :] * w1.clamp(min=0)[None]  # (N, hidden j, input i): x_i w_ji⁺
    share = share / share.sum(2, keepdim=True).clamp(min=1e-12)
    want = (p_hidden[:, :, None] * share).sum(1).view_as(x)
    got = baselines.make("excitation_backprop", model).attribute(x, t)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("architecture, shape", [("mnist_cnn2", (1, 28, 28)), ("cifar_vgg16_bn", (3, 32, 32))])
def test_excitation_backprop_is_a_probability_map_on_zoo_networks(architecture, shape):
    torch.manual_seed(0)
    model = nets.build(architecture).eval()
    for m in model.modules():  # trained-like scales: activations of order 1 in every layer (the default init
        if isinstance(m, torch.nn.Conv2d):  # shrinks them until zennit's 1e-6 stabiliser eats part of the mass)
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.BatchNorm2d):  # zero shift: every active unit has a positive input
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            m.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, t = torch.rand(3, *shape), torch.tensor([0, 3, 7])
    method = baselines.make("excitation_backprop", model)
    maps = method.attribute(x, t)
    assert maps.shape == x.shape
    assert (maps >= 0).all()  # probabilities
    # every layer hands on all it receives (a layer can only keep or lose mass), so a total of 1 at the
    # pixels means that no layer lost any
    assert torch.allclose(maps.sum((1, 2, 3)), torch.ones(3, dtype=maps.dtype), atol=1e-3)
    assert torch.equal(maps, method.attribute(x, t))  # deterministic
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model is untouched
    contrastive = baselines.make("excitation_backprop", model, contrastive=True).attribute(x, t)
    assert torch.allclose(contrastive.sum((1, 2, 3)), torch.zeros(3, dtype=maps.dtype), atol=1e-3)  # 1 − 1
    assert (contrastive < 0).any() and (contrastive > 0).any()


def test_gradcam_reads_the_rectified_last_convolution():
    vgg, resnet = nets.build("cifar_vgg16_bn"), nets.build("cifar_resnet8")
    modules = list(vgg.modules())
    layer = baselines.gradcam_layer(vgg)
    assert isinstance(layer, torch.nn.ReLU)
    assert modules.index(layer) > modules.index(baselines.last_conv(vgg))
    assert baselines.gradcam_layer(resnet) is resnet[-4].out  # the last residual block's output
    maps = baselines.make("gradcam", vgg.eval()).attribute(torch.rand(2, 3, 32, 32), target=0)
    assert maps.shape == (2, 3, 32, 32) and (maps >= 0).all()


def test_smoothgrad_noise_is_seeded_and_leaves_the_callers_random_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = torch.rand(2, 3, 2, 2)
    method = baselines.make("smoothgrad", model, samples=4)
    state = torch.get_rng_state()
    first = method.attribute(x, 1)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator did not move
    torch.rand(5)  # whatever ran before does not matter
    assert torch.equal(method.attribute(x, 1), first)
    assert not torch.equal(baselines.make("smoothgrad", model, samples=4, seed=1).attribute(x, 1), first)
