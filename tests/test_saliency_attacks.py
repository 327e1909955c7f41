import math

import pytest
import torch
from torch import nn

from salbook.methods import baselines, registry
from salbook.methods.gradients import gradient
from salbook.yardsticks.fidelity import saliency_fidelity
from salbook.yardsticks.saliency_attacks import (decoy_range_saliency, pixel_saliency, saliency_attack, same_norm_noise,
                                                 sensitivity, softplus_surrogate)


@pytest.fixture
def relu_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 64, 3)).eval()


@pytest.fixture
def images():
    return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# --- the softplus surrogate ---------------------------------------------------------------------

def test_surrogate_replaces_every_relu_and_approximates_the_model(relu_net, images):
    surrogate = softplus_surrogate(relu_net, beta=50.0)
    kinds = [type(m) for m in surrogate.modules()]
    assert nn.ReLU not in kinds and kinds.count(nn.Softplus) == 2
    assert sum(isinstance(m, nn.ReLU) for m in relu_net.modules()) == 2  # the original is left alone
    with torch.no_grad():
        assert torch.allclose(surrogate(images), relu_net(images), atol=0.05)


def test_relu_maps_have_no_second_derivative_but_the_surrogate_has(relu_net, images):
    """Why the attack needs the surrogate: ∇_x of a ReLU network's gradient map is exactly 0."""
    c = torch.zeros(3, dtype=torch.long)
    for model, zero in ((relu_net, True), (softplus_surrogate(relu_net), False)):
        x = images.clone().requires_grad_()
        (g,) = torch.autograd.grad(pixel_saliency(gradient(model, x, c, True))[:, 0, 0].sum(), x)
        assert bool((g == 0).all()) is zero


# --- the three attacks ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["topk", "targeted", "mass_center"])
def test_attacks_keep_the_label_stay_in_budget_and_increase_their_objective(relu_net, images, kind):
    eps = 8 / 255
    method = baselines.make("gradient", relu_net)
    result = saliency_attack(method, images, kind=kind, eps=eps, step_size=1 / 255, steps=15, progress=False)
    adv = result.adversarial
    assert adv.shape == images.shape and adv.min() >= 0 and adv.max() <= 1
    assert (adv - images).abs().max() <= eps + 1e-6
    with torch.no_grad():
        assert torch.equal(relu_net(adv).argmax(1), result.label)
    assert (result.objective > result.start).all()
    assert result.history.shape == (16, 3)
    assert torch.allclose(result.objective, torch.nan_to_num(result.history, nan=-math.inf).amax(0))


def test_targeted_attack_moves_mass_into_the_corner(relu_net, images):
    result = saliency_attack(baselines.make("gradient", relu_net), images, kind="targeted", corner=2, steps=15,
                             progress=False)
    c = result.label
    before = pixel_saliency(gradient(relu_net, images, c))[:, 6:, 6:].sum((1, 2))
    after = pixel_saliency(gradient(relu_net, result.adversarial, c))[:, 6:, 6:].sum((1, 2))
    assert torch.allclose(before, result.start) and torch.allclose(after, result.objective, atol=1e-6)
    assert (after > before).all()


@pytest.mark.parametrize("name, options", [("integrated_gradients", {"n_steps": 4}),
                                           ("smoothgrad", {"samples": 3, "noise": 0.2, "seed": 5})])
def test_the_attacked_map_is_the_scored_map(relu_net, images, name, options):
    """The start objective is D of the very map the method scores (its attribute), with its options."""
    c = torch.zeros(3, dtype=torch.long)
    method = registry.make(name, relu_net, **options)
    result = saliency_attack(method, images, kind="targeted", target=c, corner=2, steps=1, progress=False)
    corner = pixel_saliency(method.attribute(images, c))[:, 6:, 6:].sum((1, 2))
    other = pixel_saliency(registry.make(name, relu_net).attribute(images, c))[:, 6:, 6:].sum((1, 2))  # defaults
    assert torch.allclose(result.start, corner, atol=1e-6) and not torch.allclose(result.start, other)


def test_the_attack_refuses_a_method_without_a_differentiable_map(relu_net, images):
    with pytest.raises(TypeError, match="LRP has no saliency and no with_model.*integrated_gradients"):
        saliency_attack(registry.make("lrp", relu_net), images, steps=1)
    with pytest.raises(TypeError, match="no with_model"):
        saliency_attack(type("Half", (), {"saliency": lambda self, x, t, g=False: x})(), images, steps=1)


def test_sensitivity_known_answer():
    maps = torch.zeros(2, 1, 2)
    maps_adv = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])
    x = torch.zeros(2, 1, 1, 2)
    x_adv = torch.tensor([[0.0, 2.0], [0.0, 0.0]]).view(2, 1, 1, 2)
    ss = sensitivity(maps, maps_adv, x, x_adv)
    assert ss[0] == pytest.approx(2.5) and math.isnan(ss[1])  # ‖(3, 4)‖ / ‖(0, 2)‖; x̂ = x is undefined


def test_attack_bad_inputs(relu_net, images):
    method = baselines.make("gradient", relu_net)
    with pytest.raises(ValueError, match="unknown attack"):
        saliency_attack(method, images, kind="random")
    with pytest.raises(ValueError, match="eps and step_size"):
        saliency_attack(method, images, eps=0)
    with pytest.raises(ValueError, match="k must lie"):
        saliency_attack(method, images, k=65, steps=1)
    with pytest.raises(ValueError, match="NaN"):
        saliency_attack(method, images * torch.nan)
    with pytest.raises(ValueError, match="beta"):
        softplus_surrogate(relu_net, beta=0)
    with pytest.raises(ValueError, match="one map per image"):
        sensitivity(torch.zeros(2, 4), torch.zeros(2, 4), images, images)


# --- saliency fidelity ----------------------------------------------------------------------------

@pytest.fixture
def left_half_model(linear_model):
    """Two classes on 1 × 2 × 2 images: z₀ = sum of the left column, z₁ = 0."""
    return linear_model(torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])).eval()


def test_fidelity_of_a_constant_map_is_zero(relu_net, images):
    for value in (0.0, 0.3, 1.0):
        assert (saliency_fidelity(relu_net, images, torch.full((3, 8, 8), value)) == 0).all()


def test_fidelity_known_answers(left_half_model):
    x = torch.ones(1, 1, 2, 2)
    left = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    # E∘x keeps the left column (z₀ = 2); Ē∘x = 0.5·x (z₀ = 1): SF = log σ(1) − log σ(2) < 0
    sf = saliency_fidelity(left_half_model, x, left, target=0)
    log_sigmoid = torch.nn.functional.logsigmoid
    assert sf.item() == pytest.approx((log_sigmoid(torch.tensor(1.0)) - log_sigmoid(torch.tensor(2.0))).item())
    assert saliency_fidelity(left_half_model, x, 1 - left, target=0).item() > 0  # the wrong half scores worse
    # centred: (E − Ē)∘x = ±0.5, z₀ = 1, so SF = −log σ(1)
    centred = saliency_fidelity(left_half_model, x, left, target=0, reading="centred")
    assert centred.item() == pytest.approx(-log_sigmoid(torch.tensor(1.0)).item())


def test_fidelity_batches_and_channels_agree(relu_net, images):
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    one = saliency_fidelity(relu_net, images, maps, batch_size=1)
    assert torch.allclose(one, saliency_fidelity(relu_net, images, maps))
    assert torch.allclose(one, saliency_fidelity(relu_net, images, maps[:, None].expand(3, 3, 8, 8)))


def test_fidelity_bad_inputs(relu_net, images):
    with pytest.raises(ValueError, match="post-process"):
        saliency_fidelity(relu_net, images, torch.full((3, 8, 8), 2.0))
    with pytest.raises(ValueError, match="unknown reading"):
        saliency_fidelity(relu_net, images, torch.zeros(3, 8, 8), reading="log")
    with pytest.raises(ValueError, match="matching inputs"):
        saliency_fidelity(relu_net, images, torch.zeros(3, 7, 8))


# --- the attacker who knows the defence, the control, NaN maps --------------------------------------

def test_decoy_range_surrogate_known_answers(relu_net, images):
    c = torch.tensor([0, 1, 2])
    method = baselines.make("gradient", relu_net)
    same = torch.zeros(3, 4, 3, 8, 8)  # four decoys equal to x: the range is 0
    assert torch.equal(decoy_range_saliency(method, images, c, offsets=same), torch.zeros_like(images))
    offsets = torch.zeros(3, 2, 3, 8, 8)
    offsets[:, 1, :, :3, :3] = 0.2  # one decoy changes a 3×3 patch
    moved = (images + offsets[:, 1]).clamp(0, 1)
    expected = (gradient(relu_net, moved, c) - gradient(relu_net, images, c)).abs()
    assert torch.allclose(decoy_range_saliency(method, images, c, offsets=offsets), expected, atol=1e-6)
    linear = baselines.make("gradient", nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 3)).eval())
    assert decoy_range_saliency(linear, images, c, offsets=offsets).abs().max() < 1e-6  # one gradient everywhere
    with pytest.raises(ValueError, match="offsets must be"):
        decoy_range_saliency(method, images, c, offsets=torch.zeros(3, 3, 8, 8))


def test_adaptive_attack_raises_the_objective_of_the_decoy_map(relu_net, images):
    offsets = 0.1 * torch.randn(3, 3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    eps = 8 / 255
    method = baselines.make("gradient", relu_net)
    result = saliency_attack(method, images, kind="topk", eps=eps, steps=10, decoy_offsets=offsets, progress=False)
    assert (result.adversarial - images).abs().max() <= eps + 1e-6
    assert (result.objective > result.start).all()
    # the objective it reports is the top-k objective of the decoy map (the range), not of the base map
    c = result.label
    p0 = pixel_saliency(decoy_range_saliency(method, images, c, offsets=offsets))
    top = p0.flatten(1).topk(round(5000 / 224 ** 2 * 64), 1).indices
    adv = pixel_saliency(decoy_range_saliency(method, result.adversarial, c, offsets=offsets)).flatten(1)
    assert torch.allclose(-adv.gather(1, top).sum(1), result.objective, atol=1e-5)


def test_same_norm_noise_matches_the_attacks_norm():
    x = torch.full((2, 3, 8, 8), 0.5)
    adv = x.clone()
    adv[0, 0, 0, :4] += 4 / 255  # ‖x̂ − x‖₂ = 8/255
    noisy = same_norm_noise(x, adv, seed=1)
    norms = (noisy - x).flatten(1).norm(dim=1)
    assert norms[0].item() == pytest.approx(8 / 255, rel=1e-5) and norms[1].item() == 0  # x̂ = x: no noise
    assert (noisy - x).abs().max() <= 8 / 255  # spread over every pixel, so within the L∞ budget
    assert torch.equal(noisy, same_norm_noise(x, adv, seed=1)) and not torch.equal(noisy, same_norm_noise(x, adv, seed=2))
    with pytest.raises(ValueError, match="differ in shape"):
        same_norm_noise(x, adv[:1])


def test_yardsticks_refuse_nan_maps(relu_net, images):
    maps = torch.rand(3, 8, 8)
    bad = maps.clone()
    bad[1, 2, 2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        sensitivity(maps, bad, images, images.flip(0))
    with pytest.raises(ValueError, match="NaN"):
        sensitivity(bad, maps, images, images.flip(0))
    with pytest.raises(ValueError, match="NaN"):
        saliency_fidelity(relu_net, images, bad)
    with pytest.raises(TypeError, match="floating point"):
        saliency_fidelity(relu_net, images, torch.ones(3, 8, 8, dtype=torch.long))
