import math

import pytest
import torch
import torch.nn.functional as F

from salbook.attacks import pgd_l2
from salbook.methods.frank_wolfe import NORMS, Q, FrankWolfe, frank_wolfe, lmo, pgd_l1, project_l1, scale_eps, top_count
from salbook.yardsticks.robustness import robust_correct

EPS = {"linf": 0.1, "l2": 1.0, "l1q": 8.0}


@pytest.fixture
def images():
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def norm_of(delta, norm):
    flat = delta.flatten(1)
    return {"linf": flat.abs().amax(1), "l2": flat.norm(dim=1), "l1q": flat.abs().sum(1)}[norm]


def test_top_count_is_the_ceiling_of_q_d():
    assert top_count(0.3, 10) == 3  # 0.3·10 = 3.0000000000000004 in floating point
    assert top_count(0.31, 10) == 4 and top_count(1e-6, 10) == 1 and top_count(1.0, 10) == 10
    assert top_count(0.005, 3072) == 16  # the reference notebook's sparsity on a CIFAR image


@pytest.mark.parametrize("norm", NORMS)
def test_each_oracle_returns_a_point_of_its_sphere_against_the_gradient(norm):
    g = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    s = lmo(g, norm, 0.7, q=0.1)
    assert s.shape == g.shape
    assert torch.allclose(norm_of(s, norm), torch.full((4,), 0.7), rtol=1e-5)
    nonzero = s != 0
    assert (s.sign()[nonzero] == -g.sign()[nonzero]).all()
    if norm == "linf":
        assert torch.equal(s, -0.7 * g.sign())
    if norm == "l2":
        assert torch.allclose(F.cosine_similarity(s.flatten(1), g.flatten(1)), torch.full((4,), -1.0))


@pytest.mark.parametrize("q", [1 / 192, 0.01, 0.1, 0.5, 1.0])
def test_l1q_oracle_puts_equal_mass_on_exactly_the_top_q_entries(q):
    g = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)).flatten(1)
    s = lmo(g, "l1q", 2.0, q=q)
    n = math.ceil(q * 192 - 1e-9)
    assert ((s != 0).sum(1) == n).all()
    assert torch.allclose(s[s != 0].abs(), torch.tensor(2.0 / n))
    kept, dropped = g.abs().masked_fill(s == 0, math.inf), g.abs().masked_fill(s != 0, -math.inf)
    assert (kept.amin(1) >= dropped.amax(1)).all()  # the support is the largest |g|


def test_oracles_beat_any_point_of_their_ball():
    g = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    for _ in range(200):
        v = torch.randn_like(g)
        assert (g * lmo(g, "linf", 1.0)).sum() <= (g * v.clamp(-1, 1)).sum() + 1e-6
        assert (g * lmo(g, "l2", 1.0)).sum() <= (g * v / v.norm()).sum() + 1e-6
        assert (g * lmo(g, "l1q", 1.0, q=1 / 16)).sum() <= (g * v / v.abs().sum()).sum() + 1e-6  # one entry: the ℓ1 LMO


def test_on_a_two_class_linear_model_every_norm_finds_the_exact_minimiser(linear_model):
    """For logits W·x, CE toward class t falls as the margin (w_t − w_o)·δ grows, so eq. (1) is solved by
    the ε-ball point most aligned with a = w_t − w_o: ε·sgn(a) (ℓ∞), ε·a/‖a‖ (ℓ2), ε·sgn(a_i)e_i at the
    largest |a_i| (ℓ1). Every gradient points along −a, so every oracle answer is that point."""
    a = torch.tensor([0.5, -2.0, 1.0, -0.25, 3.0, -1.5, 0.75, -1.0])
    model = linear_model(torch.stack([a, torch.zeros(8)]))
    x = torch.full((2, 1, 2, 4), 0.5)
    exact = {"linf": 0.2 * a.sign(), "l2": 0.2 * a / a.norm(), "l1q": 0.2 * torch.eye(8)[4]}
    for norm, best in exact.items():
        out = frank_wolfe(model, x, 0, norm=norm, eps=0.2, steps=5, q=1 / 8, box=False)
        assert torch.allclose((out.images - x).flatten(1), best.expand(2, 8), atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("q", [1 / 768, 0.02, 0.3])
def test_box_oracles_are_exact_on_the_ball_cut_by_the_image_range(norm, q):
    gen = torch.Generator().manual_seed(6)
    g, x = torch.randn(3, 3, 16, 16, generator=gen), torch.rand(3, 3, 16, 16, generator=gen)
    x[:, 0] = 1.0  # saturated entries: no room upward
    eps = {"linf": 0.3, "l2": 3.0, "l1q": 12.0}[norm]
    s = lmo(g, norm, eps, q, images=x)
    assert (x + s).min() >= 0 and (x + s).max() <= 1
    assert torch.allclose(norm_of(s, norm), torch.full((3,), eps), rtol=1e-4)  # room enough to reach the sphere
    if norm == "l1q":
        assert (s.abs() <= eps / top_count(q, 768) * (1 + 1e-6)).all()
    for _ in range(50):  # no feasible point does better: random points of the box, shrunk into the ball
        v = torch.rand(x.shape, generator=gen) - x
        if norm == "l1q":
            v = v.clamp(-eps / top_count(q, 768), eps / top_count(q, 768))
        v = v * (eps / norm_of(v, norm)).clamp(max=1).view(-1, 1, 1, 1)
        assert ((g * s).flatten(1).sum(1) <= (g * v).flatten(1).sum(1) + 1e-4).all()


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("box", [True, False])
def test_iterates_stay_in_the_ball_and_with_the_box_in_the_image_range(cnn, images, norm, box):
    outside = False
    for steps in (1, 2, 7):
        out = frank_wolfe(cnn, images, 3, norm=norm, eps=EPS[norm], steps=steps, q=0.02, box=box)
        assert (norm_of(out.images - images, norm) <= EPS[norm] * (1 + 1e-5)).all()
        outside |= bool((out.images < 0).any() or (out.images > 1).any())
    assert outside != box  # without the box, x + δ leaves [0, 1] (as in the reference code)


def test_first_step_is_the_oracle_answer_at_the_clean_image(cnn, images):
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(cnn(x), torch.full((6,), 3), reduction="sum"), x)
    out = frank_wolfe(cnn, images, 3, norm="l2", eps=1.0, steps=1, box=False)
    assert torch.allclose(out.images - images, lmo(grad, "l2", 1.0), atol=1e-6)  # γ₀ = c/c = 1


@pytest.mark.parametrize("norm, q", [("linf", Q), ("l2", Q), ("l1q", 1 / 64), ("l1q", 0.1), ("l1q", 0.5)])
def test_targeted_fw_reaches_the_least_likely_class_of_a_linear_classifier(linear_model, norm, q):
    model = linear_model(torch.randn(10, 64, generator=torch.Generator().manual_seed(3)))
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    target, eps = model(x).argmin(1), {"linf": 0.5, "l2": 3.0, "l1q": 16.0}[norm]
    out = frank_wolfe(model, x, target, norm=norm, eps=eps, q=q)
    assert out.success.all() and out.images.min() >= 0 and out.images.max() <= 1
    assert (out.loss < F.cross_entropy(model(x), target, reduction="none")).all()
    assert frank_wolfe(model, x, norm=norm, eps=eps, q=q, targeted=False).success.all()  # away from the prediction


def test_sparsity_grows_with_q_and_respects_the_union_of_supports(cnn, images):
    d, steps, changed = 3 * 16 * 16, 10, []
    for q in (0.002, 0.01, 0.05, 0.2, 1.0):
        out = frank_wolfe(cnn, images, 3, norm="l1q", eps=8.0, steps=steps, q=q, box=False)
        per_image = (out.images != images).flatten(1).sum(1)
        assert (per_image <= min(d, steps * top_count(q, d))).all()  # δ is a union of ≤ steps supports
        changed.append(per_image.float().mean().item())
    assert changed == sorted(changed) and changed[0] < changed[-1] == d


def test_images_are_perturbed_independently_of_their_batch(cnn, images):
    together = frank_wolfe(cnn, images, 3, norm="l1q", eps=8.0, steps=5, q=0.02)
    alone = frank_wolfe(cnn, images[2:3], 3, norm="l1q", eps=8.0, steps=5, q=0.02)
    assert torch.allclose(together.images[2:3], alone.images, atol=1e-6)


def test_captum_verb_returns_the_perturbation_and_defaults_to_the_prediction(cnn, images):
    method = FrankWolfe(cnn, norm="l2", eps=1.0, steps=3)
    delta = method.attribute(images)
    assert delta.shape == images.shape and torch.allclose(images + delta, method.result.images)
    assert method.result.success.all()  # toward its own prediction, the model stays (and grows) confident
    assert (method.result.loss < F.cross_entropy(cnn(images), cnn(images).argmax(1), reduction="none")).all()


def test_scale_eps_keeps_the_per_entry_amplitude_and_the_papers_l1_rule():
    assert scale_eps(0.25, "linf") == 0.25
    assert scale_eps(35, "l2") == pytest.approx(5.0) and scale_eps(12, "l2") == pytest.approx(12 / 7)
    eps1_224 = 35 * math.sqrt(3 * 224 ** 2)  # the paper's ε₁ = ε₂·224·√3
    assert scale_eps(eps1_224, "l1q") == pytest.approx(scale_eps(35, "l2") * math.sqrt(3 * 32 ** 2))
    assert scale_eps(7.0, "l1q", size=224) == 7.0


def test_project_l1_is_the_euclidean_projection():
    v = torch.tensor([[3.0, 1.0], [1.0, -1.0], [0.2, -0.3], [0.0, 0.0]]).view(4, 1, 1, 2)
    expected = torch.tensor([[2.0, 0.0], [0.5, -0.5], [0.2, -0.3], [0.0, 0.0]]).view(4, 1, 1, 2)  # ε = 2, 1, 1, 1
    assert torch.allclose(project_l1(v[:1], 2.0), expected[:1])
    assert torch.allclose(project_l1(v[1:], 1.0), expected[1:])  # points inside the ball stay
    big = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(5)) * 3
    p = project_l1(big, 4.0)
    assert torch.allclose(p.flatten(1).abs().sum(1), torch.full((5,), 4.0), rtol=1e-5)
    lo, hi = torch.zeros(5), big.flatten(1).abs().amax(1)  # soft threshold θ by bisection, independently
    for _ in range(60):
        mid = (lo + hi) / 2
        over = (big.flatten(1).abs() - mid[:, None]).clamp_min(0).sum(1) > 4.0
        lo, hi = torch.where(over, mid, lo), torch.where(over, hi, mid)
    assert torch.allclose(p.flatten(1), big.flatten(1).sign() * (big.flatten(1).abs() - lo[:, None]).clamp_min(0), atol=1e-4)


def test_pgd_l1_stays_in_the_ball_and_range_and_reaches_the_target(linear_model):
    model = linear_model(torch.randn(10, 64, generator=torch.Generator().manual_seed(3)))
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    target = model(x).argmin(1)
    out = pgd_l1(model, x, target, eps=25.0, steps=30, q=0.1)
    assert (norm_of(out.images - x, "l1q") <= 25.0 * (1 + 1e-5)).all()
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert out.success.all()


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_l2_stays_in_the_ball_and_raises_the_loss(cnn, images, random_start):
    labels = cnn(images).argmax(1)
    adv = pgd_l2(cnn, images, labels, eps=0.5, steps=5, step_size=0.25, random_start=random_start,
                 generator=torch.Generator().manual_seed(0))
    assert (norm_of(adv - images, "l2") <= 0.5 * (1 + 1e-5)).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert (F.cross_entropy(cnn(adv), labels, reduction="none") > F.cross_entropy(cnn(images), labels, reduction="none")).all()


def test_robust_correct_falls_with_eps(linear_model):
    model = linear_model(torch.randn(10, 64, generator=torch.Generator().manual_seed(3)))
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    labels = model(x).argmax(1)
    assert robust_correct(model, x, labels, 0.0).all()
    rates = [robust_correct(model, x, labels, eps, batch_size=20).float().mean().item() for eps in (0.05, 0.5, 5.0)]
    assert 1 >= rates[0] >= rates[1] >= rates[2] and rates[2] == 0


@pytest.mark.parametrize("bad, match", [
    (dict(q=0.0), "q"), (dict(q=1.5), "q"), (dict(q=-0.1), "q"), (dict(q=float("nan")), "q"),
    (dict(eps=0.0), "eps"), (dict(eps=-1.0), "eps"), (dict(eps=float("inf")), "eps"),
    (dict(norm="l3"), "unknown norm"), (dict(steps=0), "steps"), (dict(c=0.5), "c must"),
])
def test_bad_arguments_raise_a_clear_value_error(cnn, images, bad, match):
    args = dict(norm="l1q", eps=1.0, steps=2, q=0.1) | bad
    with pytest.raises(ValueError, match=match):
        frank_wolfe(cnn, images, 3, **args)
    if "c" not in bad:
        with pytest.raises(ValueError, match=match):
            FrankWolfe(cnn, **args)


@pytest.mark.parametrize("inputs, match", [
    (torch.rand(3, 16, 16), "shaped"), (torch.rand(2, 3, 16, 16) + 1, r"\[0, 1\]"),
    (torch.full((2, 3, 16, 16), float("nan")), "NaN"),
])
def test_bad_images_raise_a_clear_value_error(cnn, inputs, match):
    for attack in (lambda: frank_wolfe(cnn, inputs, 3, eps=1.0), lambda: pgd_l1(cnn, inputs, 3, eps=1.0),
                   lambda: pgd_l2(cnn, inputs, 3, eps=0.5, steps=2, step_size=0.1)):
        with pytest.raises(ValueError, match=match):
            attack()


def test_other_bad_arguments(cnn, images):
    with pytest.raises(ValueError, match="target classes"):
        frank_wolfe(cnn, images, 10, eps=1.0)
    with pytest.raises(ValueError, match="step_size"):
        pgd_l1(cnn, images, 3, eps=1.0, step_size=0.0)
    with pytest.raises(ValueError, match="pgd_l2 needs"):
        pgd_l2(cnn, images, 3, eps=0.0, steps=2, step_size=0.1)
    with pytest.raises(ValueError, match="unknown norm"):
        scale_eps(1.0, "l1")
    with pytest.raises(ValueError, match="eps"):
        scale_eps(0.0, "l2")


@pytest.mark.parametrize("bad_class", [10, -1, -100])  # −100: cross-entropy's ignore_index, silently dropped otherwise
def test_targets_and_labels_outside_the_models_classes_are_refused(cnn, images, bad_class):
    labels = torch.zeros(len(images), dtype=torch.long)
    labels[2] = bad_class
    for attack in (lambda: frank_wolfe(cnn, images, labels, eps=1.0, steps=2),
                   lambda: pgd_l1(cnn, images, labels, eps=1.0, steps=2),
                   lambda: FrankWolfe(cnn, eps=1.0, steps=2).attribute(images, labels),
                   lambda: pgd_l2(cnn, images, labels, eps=0.5, steps=2, step_size=0.1),
                   lambda: robust_correct(cnn, images, labels, 0.0),
                   lambda: robust_correct(cnn, images, labels, 0.5, steps=2)):
        with pytest.raises(ValueError, match="target classes must lie in 0..9"):
            attack()


def test_robust_correct_on_valid_labels_is_unchanged_by_the_class_check(cnn, images):
    labels = cnn(images).argmax(1)
    assert robust_correct(cnn, images, labels, 0.0).all()
    assert not robust_correct(cnn, images, (labels + 1) % 10, 0.0).any()
