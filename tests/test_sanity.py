import pytest
import torch
from torch import nn

from salbook.methods import baselines
from salbook.yardsticks import sanity


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()


def test_similarity_of_a_map_with_itself_and_its_negative():
    a = torch.randn(3, 8, 8)
    same, flipped = sanity.similarity(a, a), sanity.similarity(a, -a)
    assert same == pytest.approx({"spearman_abs": 1.0, "spearman": 1.0, "ssim": 1.0})
    assert flipped["spearman_abs"] == pytest.approx(1.0) and flipped["spearman"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        sanity.similarity(a, a[:2])
    b = torch.randn(3, 8, 8)
    out = sanity.similarity(a, b, per_image=True)
    assert out["per_image"]["spearman"].shape == (3,)
    assert out["spearman"] == pytest.approx(out["per_image"]["spearman"].mean())
    assert out["per_image"]["spearman"][1] == pytest.approx(sanity.similarity(a[1:2], b[1:2])["spearman"])


def test_a_map_that_ignores_the_model_fails_the_cascading_test():
    model, x = small_cnn(), torch.rand(4, 1, 8, 8)
    rows = sanity.cascading_randomisation(model, x, 0, lambda m, inputs, t: inputs.clone())
    assert [r["randomised"] for r in rows] == ["none", "3", "0"]  # top layer first
    assert all(r["spearman_abs"] == pytest.approx(1.0) and r["ssim"] == pytest.approx(1.0) for r in rows)


def test_the_gradient_changes_once_the_layers_are_random():
    model, x = small_cnn(), torch.rand(4, 1, 8, 8)
    gradient = lambda m, inputs, t: baselines.make("gradient", m).attribute(inputs, target=t)  # noqa: E731
    rows = sanity.cascading_randomisation(model, x, 0, gradient, seed=1)
    assert rows[0]["spearman"] == pytest.approx(1.0)
    assert abs(rows[-1]["spearman"]) < 0.5 and rows[-1]["ssim"] < 0.5
    assert sanity.weighted_layers(model)[0][1] is model[3]  # the trained model is left untouched
    assert torch.equal(baselines.make("gradient", model).attribute(x, target=0), gradient(model, x, 0))


def test_maps_already_computed_are_used_for_the_trained_model():
    model, x = small_cnn(), torch.rand(4, 1, 8, 8)
    calls = []

    def gradient(m, inputs, t):
        calls.append(m)
        return baselines.make("gradient", m).attribute(inputs, target=t)

    full = sanity.cascading_randomisation(model, x, 0, gradient, seed=1)
    reused = sanity.cascading_randomisation(model, x, 0, gradient, seed=1, original=gradient(model, x, 0))
    assert full == reused and sum(m is model for m in calls) == 2  # once inside the first call, once by hand
    with pytest.raises(ValueError, match="one map per input"):
        sanity.cascading_randomisation(model, x, 0, gradient, original=torch.zeros(2, 1, 8, 8))


def test_truncated_normal_stays_within_two_standard_deviations():
    w = sanity._truncated_normal((10_000,), 0.01, torch.Generator().manual_seed(0))
    assert w.abs().max() <= 0.02 and 0.007 < w.std() < 0.01


def test_nan_maps_are_refused():
    a = torch.randn(3, 8, 8)
    bad = a.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sanity.similarity(a, bad)
    with pytest.raises(ValueError, match="NaN"):
        sanity.similarity(bad, a)
    model, x = small_cnn(), torch.rand(3, 1, 8, 8)
    nan_after_randomising = lambda m, inputs, t: (inputs.clone() if m is model else inputs * float("nan"))  # noqa: E731
    with pytest.raises(ValueError, match="random"):  # the message names the stage whose maps were NaN
        sanity.cascading_randomisation(model, x, 0, nan_after_randomising)
    with pytest.raises(ValueError, match="trained model"):
        sanity.cascading_randomisation(model, x, 0, lambda m, inputs, t: inputs.clone(), original=bad[:, None])
