"""The one differentiable gradient / Integrated Gradients / SmoothGrad (salbook.methods.gradients)."""
import pytest
import torch
from captum import attr as captum
from torch import nn

from salbook.methods import baselines, gradients


@pytest.fixture
def relu_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 5), nn.ReLU(),
                         nn.Linear(5, 3)).eval()


@pytest.fixture
def softplus_net(relu_net):
    return nn.Sequential(*[nn.Softplus(5.0) if isinstance(m, nn.ReLU) else m for m in relu_net]).eval()


@pytest.fixture
def images():
    return torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))


TARGETS = torch.tensor([0, 2, 1])


def test_gradient_is_captums_saliency_and_autograds(relu_net, images):
    got = gradients.gradient(relu_net, images, TARGETS)
    want = captum.Saliency(relu_net).attribute(images, target=TARGETS, abs=False)
    assert torch.allclose(got, want, atol=1e-7)
    x = images[1:2].clone().requires_grad_()
    (by_hand,) = torch.autograd.grad(relu_net(x)[0, 2], x)
    assert torch.allclose(got[1:2], by_hand, atol=1e-7)
    assert torch.equal(gradients.gradient(relu_net, images, 1), gradients.gradient(relu_net, images, [1, 1, 1]))


@pytest.mark.parametrize("n_steps", [1, 7, 50])
def test_integrated_gradients_equal_captums_gauss_legendre(relu_net, images, n_steps):
    got = gradients.integrated_gradients(relu_net, images, TARGETS, n_steps, rows=8)  # several passes
    want = captum.IntegratedGradients(relu_net).attribute(images, baselines=torch.zeros_like(images),
                                                          target=TARGETS, n_steps=n_steps, method="gausslegendre")
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(gradients.integrated_gradients(relu_net, images, TARGETS, n_steps), got, atol=1e-6)


def test_integrated_gradients_are_complete_and_exact_for_a_linear_model(relu_net, images):
    """Σ_i IG_i = F(x) − F(x') (Sundararajan et al.'s completeness), to the quadrature's accuracy."""
    ig = gradients.integrated_gradients(relu_net, images, TARGETS, n_steps=200)
    with torch.no_grad():
        f = relu_net(images).gather(1, TARGETS[:, None])[:, 0]
        f0 = relu_net(torch.zeros_like(images)).gather(1, TARGETS[:, None])[:, 0]
    assert torch.allclose(ig.sum((1, 2, 3)), f - f0, atol=2e-3)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(48, 3)).eval()
    w = linear[1].weight.detach()[TARGETS].view_as(images)
    assert torch.allclose(gradients.integrated_gradients(linear, images, TARGETS, n_steps=1), images * w, atol=1e-6)
    gray = gradients.integrated_gradients(linear, images, TARGETS, n_steps=1, baseline=0.5)
    assert torch.allclose(gray, (images - 0.5) * w, atol=1e-6)


def test_smoothgrad_without_noise_is_the_gradient(relu_net, images):
    g = gradients.gradient(relu_net, images, TARGETS)
    kw = {"samples": 4, "noise": 0.0, "rows": 5}
    assert torch.allclose(gradients.smoothgrad(relu_net, images, TARGETS, **kw), g, atol=1e-6)
    assert torch.allclose(gradients.smoothgrad(relu_net, images, TARGETS, reduce="square", **kw), g.square(), atol=1e-6)
    assert torch.allclose(gradients.smoothgrad(relu_net, images, TARGETS, reduce="var", **kw), torch.zeros_like(g),
                          atol=1e-9)


def test_smoothgrad_is_seeded_leaves_the_global_rng_and_ignores_batching(relu_net, images):
    state = torch.get_rng_state()
    first = gradients.smoothgrad(relu_net, images, TARGETS, samples=5, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(7)  # what ran before does not matter
    assert torch.equal(gradients.smoothgrad(relu_net, images, TARGETS, samples=5, seed=3), first)
    assert not torch.allclose(gradients.smoothgrad(relu_net, images, TARGETS, samples=5, seed=4), first)
    one = gradients.smoothgrad(relu_net, images[2:], TARGETS[2:], samples=5, seed=3, rows=1)  # alone, in passes of 1
    assert torch.allclose(one, first[2:], atol=1e-6)


def test_smoothgrad_statistics_by_hand(relu_net, images):
    """Mean, mean square and population variance of the gradients at x + ε_s, ε_s ~ N(0, σ²) drawn from
    a CPU generator seeded with ``seed``, the same ε_s for every image."""
    samples, noise, seed = 6, 0.2, 9
    eps = noise * torch.randn((samples, 1, 3, 4, 4), generator=torch.Generator().manual_seed(seed))
    g = torch.stack([gradients.gradient(relu_net, images + e, TARGETS) for e in eps])
    for reduce, want in (("mean", g.mean(0)), ("square", g.square().mean(0)), ("var", g.var(0, unbiased=False))):
        got = gradients.smoothgrad(relu_net, images, TARGETS, samples, noise, seed, reduce=reduce)
        assert torch.allclose(got, want, atol=1e-6), reduce


def test_noisy_gradients_are_the_samples_smoothgrad_reduces(relu_net, images):
    """Per image, the gradient at each x + ε_s (smoothgrad's ε_s); SmoothGrad, SG-SQ and VarGrad are
    their statistics over the samples axis, however the images are grouped into passes."""
    samples, noise, seed = 6, 0.2, 9
    eps = noise * torch.randn((samples, 1, 3, 4, 4), generator=torch.Generator().manual_seed(seed))
    want = torch.stack([gradients.gradient(relu_net, images + e, TARGETS) for e in eps], 1)
    g = gradients.noisy_gradients(relu_net, images, TARGETS, samples, noise, seed, rows=7)  # passes of one image
    assert g.shape == (3, samples, 3, 4, 4) and torch.allclose(g, want, atol=1e-6)
    for reduce, stat in (("mean", g.mean(1)), ("square", g.square().mean(1)), ("var", g.var(1, correction=0))):
        assert torch.allclose(gradients.smoothgrad(relu_net, images, TARGETS, samples, noise, seed, reduce=reduce),
                              stat, atol=1e-6), reduce
    with pytest.raises(ValueError, match="samples ≥ 1"):
        gradients.noisy_gradients(relu_net, images, TARGETS, samples=0)


class _Square(nn.Module):
    """f_k(x) = Σ w_k x²: its gradient 2 w_k x is linear in x, so noisy gradients have known moments."""

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(weights)

    def forward(self, x):
        return torch.stack([(w * x.square()).flatten(1).sum(1) for w in self.w], 1)


def test_noisy_gradients_have_smoothgrads_moments():
    """For f = Σ w x², ∂f/∂x at x + ε is 2w(x + ε): mean 2wx (the gradient at x), variance 4w²σ²."""
    model = _Square(torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(0)))
    x, sigma = torch.rand(4, 1, 3, 3, generator=torch.Generator().manual_seed(1)), 0.2
    g = gradients.noisy_gradients(model, x, 1, samples=4000, noise=sigma, rows=1000)
    w = model.w[1].detach()
    assert torch.allclose(g.mean(1), 2 * w * x, atol=0.03)
    assert torch.allclose(g.var(1), (2 * w * sigma).square().expand_as(x), rtol=0.1, atol=1e-4)


@pytest.mark.parametrize("explain", [
    lambda m, x, t: gradients.gradient(m, x, t, create_graph=True),
    lambda m, x, t: gradients.integrated_gradients(m, x, t, n_steps=3, create_graph=True, rows=4),
    lambda m, x, t: gradients.smoothgrad(m, x, t, samples=3, create_graph=True, rows=4),
    lambda m, x, t: gradients.smoothgrad(m, x, t, samples=3, create_graph=True, reduce="var"),
])
def test_create_graph_gives_a_map_that_can_be_differentiated(softplus_net, images, explain):
    x = images.clone().requires_grad_()
    (g,) = torch.autograd.grad(explain(softplus_net, x, TARGETS).square().sum(), x)
    assert g.abs().sum() > 0 and torch.isfinite(g).all()


@pytest.mark.parametrize("name, options, direct", [
    ("gradient", {}, lambda m, x, t: gradients.gradient(m, x, t)),
    ("integrated_gradients", {"n_steps": 9}, lambda m, x, t: gradients.integrated_gradients(m, x, t, 9)),
    ("vargrad", {"samples": 4, "seed": 2}, lambda m, x, t: gradients.smoothgrad(m, x, t, 4, seed=2, reduce="var")),
])
def test_the_baselines_score_these_maps(relu_net, images, name, options, direct):
    """The scored map (attribute: CPU, detached) is the method's differentiable map (saliency)."""
    method = baselines.make(name, relu_net, **options)
    want = direct(relu_net, images, TARGETS)
    assert torch.equal(method.attribute(images, TARGETS), want) and torch.equal(method.saliency(images, TARGETS), want)
    other = method.with_model(nn.Identity())
    assert other.model is not relu_net and method.model is relu_net and vars(other).keys() == vars(method).keys()


def test_bad_options(relu_net, images):
    with pytest.raises(ValueError, match="n_steps"):
        gradients.integrated_gradients(relu_net, images, TARGETS, n_steps=0)
    with pytest.raises(ValueError, match="unknown reduce"):
        gradients.smoothgrad(relu_net, images, TARGETS, reduce="median")
    with pytest.raises(ValueError, match="noise ≥ 0"):
        gradients.smoothgrad(relu_net, images, TARGETS, noise=-0.1)
    with pytest.raises(ValueError, match="rows"):
        gradients.smoothgrad(relu_net, images, TARGETS, rows=0)
    with pytest.raises(ValueError, match="one class per input"):
        gradients.gradient(relu_net, images, [0, 1])
