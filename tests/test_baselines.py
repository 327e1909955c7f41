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
    model = nets.build("cifar_vgg16_bn_quarter").eval()
    x = torch.rand(2, 3, 32, 32)
    options = {"samples": 2} if name in ("smoothgrad", "smoothgrad_sq", "vargrad") else {}
    if name == "integrated_gradients":
        options = {"n_steps": 4}
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
