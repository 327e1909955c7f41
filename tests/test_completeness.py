import math

import numpy as np
import pytest
import torch
from torch import nn

from salbook.yardsticks import completeness as cs

W = torch.tensor([4.0, 3.0, 2.0, 1.0])  # evidence for class 0 carried by each of the 4 pixels


class Linear2(nn.Module):
    """Logits (w·x, 0) on 2×2 one-channel images: p(class 0 | x) = sigmoid(w·x), by hand."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(W.clone())

    def forward(self, x):
        z = x.flatten(1) @ self.w
        return torch.stack([z, torch.zeros_like(z)], 1)


def sig(z):
    return 1 / (1 + math.exp(-z))


def trapezoid(values):
    n = len(values) - 1
    return (sum(values) - values[0] / 2 - values[-1] / 2) / n


X = torch.ones(1, 1, 2, 2)
BEST = W.view(1, 2, 2)             # keeps pixels 0, 1, 2, 3: kept evidence 0, 4, 7, 9, 10
WORST = -W.view(1, 2, 2)           # keeps pixels 3, 2, 1, 0: kept evidence 0, 1, 3, 6, 10


def test_game_curve_of_a_linear_model_is_the_sigmoid_of_the_kept_evidence():
    model = Linear2()
    best = cs.game_curve(model, X, 0, BEST, fill="zero", step=1)
    worst = cs.game_curve(model, X, 0, WORST, fill="zero", step=1)
    assert best[0] == pytest.approx([sig(v) for v in (0, 4, 7, 9, 10)], abs=1e-12)
    assert worst[0] == pytest.approx([sig(v) for v in (0, 1, 3, 6, 10)], abs=1e-12)
    # step 3 on 4 pixels: keep 0, 3, then all 4 (the last column is always the untouched image)
    assert cs.game_curve(model, X, 0, BEST, fill="zero", step=3)[0] == pytest.approx([sig(0), sig(9), sig(10)])
    # a constant fill shifts every kept-nothing pixel's evidence: fill 0.5 → kept-none evidence 5
    assert cs.game_curve(model, X, 0, BEST, fill=0.5, step=4)[0] == pytest.approx([sig(5), sig(10)])


def test_alpha_and_beta_follow_the_thesis_formulas():
    model = Linear2()
    labels = cs.all_labels(1, 2)                                  # [[0, 1]]
    maps = torch.stack([BEST, WORST], 1)                          # label 0: its evidence first; label 1: the reverse
    out = cs.scores(model, X, labels, maps, fill="zero", step=1, eps=0.01)
    f = [sig(10), sig(-10)]
    g = [trapezoid([sig(v) for v in (0, 4, 7, 9, 10)]), trapezoid([sig(-v) for v in (0, 1, 3, 6, 10)])]
    assert out["f"][0] == pytest.approx(f, rel=1e-12)
    assert out["g_auc"][0] == pytest.approx(g, rel=1e-12)
    alpha = [min(max(gi, 0.01) / fi, 1) for gi, fi in zip(g, f)]
    beta = [min(max(fi, 0.01) / gi, 1) for gi, fi in zip(g, f)]
    assert out["alpha"][0] == pytest.approx(alpha, rel=1e-12)
    assert out["beta"][0] == pytest.approx(beta, rel=1e-12)
    # Label 1 is all but excluded (f = 4.5e-5 < ε₁): complete by convention. But the all-zero start
    # of its game is a 50/50 image, so its mask "proves" label 1 at g ≈ 0.14: a soundness failure
    # caused by the uninformative fill alone, the thesis' distribution-shift criticism in miniature.
    assert alpha[1] == 1 and beta[1] == pytest.approx(0.01 / g[1]) and beta[1] < 0.1
    assert cs.completeness(model, X, labels, maps, fill="zero", step=1) == pytest.approx([min(alpha)])
    assert cs.soundness(model, X, labels, maps, fill="zero", step=1) == pytest.approx([min(beta)])
    # one label per image: no minimum, the per-label score itself
    assert cs.completeness(model, X, 0, BEST, fill="zero", step=1) == pytest.approx([alpha[0]])


def test_one_map_shared_by_all_labels_plays_one_game_per_image():
    model = Linear2()
    x = torch.rand(3, 1, 2, 2)
    labels = cs.all_labels(3, 2)
    shared = torch.randn(3, 2, 2)
    once = cs.scores(model, x, labels, shared, fill="mean", step=1, per_label=False)
    repeated = cs.scores(model, x, labels, shared[:, None].expand(-1, 2, -1, -1), fill="mean", step=1)
    for key in ("f", "g_auc", "alpha", "beta", "curve"):
        assert np.allclose(once[key], repeated[key], rtol=1e-12, atol=1e-15)
    every = cs.game_probabilities(model, x, shared, fill="mean", step=1)
    assert every.shape == (3, 5, 2) and torch.allclose(every.sum(2), torch.ones(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="attributions must be"):
        cs.scores(model, x, labels, shared[:, None].expand(-1, 2, -1, -1), per_label=False)


def test_fill_spread_is_the_range_of_the_means_with_a_bootstrap_interval():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.0, 400)
    out = cs.fill_spread({"mean": base, "zero": base - 0.2, "blur": base - 0.05})
    assert out["spread"] == pytest.approx(0.2) and out["n"] == 400
    assert out["ci_low"] == pytest.approx(0.2) and out["ci_high"] == pytest.approx(0.2)  # a constant shift
    noisy = cs.fill_spread({"a": base, "b": rng.uniform(0.5, 1.0, 400)})
    assert noisy["ci_low"] < noisy["spread"] < noisy["ci_high"]
    with pytest.raises(ValueError, match="two fills"):
        cs.fill_spread({"mean": base})


def test_the_top_pixels_first_are_more_complete_than_the_reverse_order():
    model, x = Linear2(), torch.full((4, 1, 2, 2), 0.3)
    best, worst = BEST.expand(4, -1, -1), WORST.expand(4, -1, -1)
    assert (cs.completeness(model, x, 0, best, fill="zero", step=1)
            > cs.completeness(model, x, 0, worst, fill="zero", step=1)).all()


def test_a_constant_model_is_complete_and_sound_whatever_the_map():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    nn.init.zeros_(model[1].weight)
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    x, maps = torch.rand(2, 1, 4, 4), torch.randn(2, 3, 4, 4)
    out = cs.scores(model, x, cs.all_labels(2, 3), maps)
    assert np.allclose(out["g_auc"], out["f"]) and np.allclose(out["alpha"], 1) and np.allclose(out["beta"], 1)


def test_fills_are_what_the_game_starts_from():
    x = torch.rand(3, 2, 16, 16)
    assert torch.equal(cs.fill_image(x, "zero"), torch.zeros_like(x))
    assert torch.allclose(cs.fill_image(x, "mean")[:, :, 5, 7], x.mean((0, 2, 3)).expand(3, -1))
    assert torch.allclose(cs.fill_image(x, torch.tensor([0.1, 0.9]))[:, 1], torch.full((3, 16, 16), 0.9))
    assert cs.fill_image(x, "blur").shape == x.shape and not torch.equal(cs.fill_image(x, "blur"), x)
    model = nn.Sequential(nn.Flatten(), nn.Linear(512, 4))
    for fill in ("mean", "zero", "blur"):
        first = cs.game_curve(model, x, 1, torch.rand(3, 16, 16), fill=fill)[:, 0]
        expected = torch.softmax(model(cs.fill_image(x, fill)).double(), 1)[:, 1].detach().numpy()
        assert first == pytest.approx(expected, rel=1e-6)


def test_keep_top_is_the_image_at_one_point_of_the_game():
    model = Linear2()
    kept = cs.keep_top(X, BEST, 2, fill="zero")
    assert kept.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    p = torch.softmax(model(kept).double(), 1)[0, 0].item()
    assert p == pytest.approx(cs.game_curve(model, X, 0, BEST, fill="zero", step=1)[0, 2])
    with pytest.raises(ValueError, match="keep"):
        cs.keep_top(X, BEST, 5)


def test_maps_for_labels_calls_the_method_once_on_repeated_images():
    calls = []

    def explain(inputs, targets):
        calls.append((inputs.shape, targets.tolist()))
        return inputs * targets.view(-1, 1, 1, 1)

    x = torch.rand(2, 1, 3, 3)
    maps = cs.maps_for_labels(explain, x, cs.all_labels(2, 3))
    assert calls == [((6, 1, 3, 3), [0, 1, 2, 0, 1, 2])]
    assert maps.shape == (2, 3, 1, 3, 3) and torch.equal(maps[1, 2], 2 * x[1])


def test_bad_input_is_refused_with_a_reason():
    model = Linear2()
    with pytest.raises(ValueError, match="NaN"):
        cs.completeness(model, X, 0, torch.full((1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        cs.completeness(model, X, 0, torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        cs.soundness(model, X, cs.all_labels(1, 2), torch.rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match="unknown fill"):
        cs.completeness(model, X, 0, BEST, fill="grey")
    with pytest.raises(ValueError, match="eps"):
        cs.completeness(model, X, 0, BEST, eps=0)
    with pytest.raises(ValueError, match="step"):
        cs.completeness(model, X, 0, BEST, step=5)
    with pytest.raises(ValueError, match="0..1"):
        cs.completeness(model, X, 2, BEST)
    with pytest.raises(ValueError, match="targets must be"):
        cs.completeness(model, X, torch.tensor([0, 1]), BEST)
    with pytest.raises(TypeError, match="integer"):
        cs.completeness(model, X, torch.tensor([0.0]), BEST)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cs.completeness(model, 2 * X, 0, BEST)
    with pytest.raises(ValueError, match="fill tensor"):
        cs.completeness(model, X, 0, BEST, fill=torch.zeros(3))


def test_nan_maps_are_refused_wherever_they_enter():
    model, nan = Linear2(), torch.full((1, 2, 2), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        cs.keep_top(X, nan, 1)
    with pytest.raises(ValueError, match="NaN"):
        cs.game_curve(model, X, 0, nan)
    with pytest.raises(ValueError, match="NaN"):
        cs.scores(model, X, cs.all_labels(1, 2), torch.full((1, 2, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        cs.maps_for_labels(lambda x, t: x * float("nan"), X, cs.all_labels(1, 2))
