import numpy as np
import pytest
import torch

from salbook import stats, zoo
from salbook.grids import decoys as grid

MODEL, DECOY = "cifar-resnet8", dict(layer=3, eps=0.3, patch=3, stride=10, steps=5)


@pytest.fixture(scope="module")
def weights():
    return zoo.get(MODEL, "smoke").card["weights_sha256"]


def test_fidelity_job_scores_every_variant_and_its_decoys_are_valid(weights):
    bases = {"Gradient": ("gradient", None)}
    out = grid.fidelity_maps(MODEL, "smoke", weights, [0, 1], [3, 3], bases, DECOY)
    maps = out["maps"]["Gradient"]
    assert set(maps) == {"base", "range", "mean", "constant"}
    for m in maps.values():
        assert m.shape == (2, 32, 32) and m.min() >= 0 and m.max() <= 1  # post-processed
    assert set(out["fidelity"]) == {"ratio", "centred"}
    assert out["fidelity"]["ratio"]["Gradient"]["range"].shape == (2,)
    assert out["violation_rate"]["optimised"] == 0.0
    # the same images one at a time give the same maps: decoys and maps do not depend on the batch
    single = grid.fidelity_maps(MODEL, "smoke", weights, [1], [3], bases, DECOY)
    torch.testing.assert_close(single["maps"]["Gradient"]["range"][0], maps["range"][1], atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="one target per image"):
        grid.fidelity_maps(MODEL, "smoke", weights, [0, 1], [3], bases, DECOY)
    with pytest.raises(ValueError, match="weights_sha256"):
        grid.fidelity_maps(MODEL, "smoke", "0" * 64, [0], [3], bases, DECOY)


def test_study_and_attack_jobs(weights):
    study = grid.decoy_study(MODEL, "smoke", weights, [0], DECOY)
    assert study["decoys_per_image"] == 2 * 16 and study["move"].shape == (1, 32)
    assert (study["distance_over_eps"] <= 1 + 1e-3).all() and study["violation_rate"] == 0.0
    assert study["map"].shape == (1, 32, 32)
    assert "map" not in grid.decoy_study(MODEL, "smoke", weights, [0], DECOY, with_map=False)
    out = grid.attack_sensitivity(MODEL, "smoke", weights, [0], "topk", "gradient", None, dict(steps=2), DECOY, c2=0.5)
    assert out["base"].shape == out["decoy"].shape == (1,)
    assert out["maps"]["decoy_adversarial"].shape == (1, 32, 32)
    assert (out["adversarial"] - grid.data.to_input(grid.data.cifar10("test").x[[0]])).abs().max() <= 8 / 255 + 1e-6
    assert "control" not in out and "adaptive" not in out


def test_attack_job_with_the_adaptive_attack_and_the_control(weights):
    out = grid.attack_sensitivity(MODEL, "smoke", weights, [0, 1], "topk", "gradient", None, dict(steps=2), DECOY,
                                  c2=0.5, control=True, adaptive=3)
    plain = grid.attack_sensitivity(MODEL, "smoke", weights, [0, 1], "topk", "gradient", None, dict(steps=2), DECOY,
                                    c2=0.5)
    for extra in ("control", "adaptive"):
        assert out[extra]["base"].shape == out[extra]["decoy"].shape == (2,)
        assert torch.isfinite(out[extra]["decoy"][out[extra]["moved"]]).all()
    torch.testing.assert_close(out["base"], plain["base"])  # the paper's protocol is unchanged by the additions
    torch.testing.assert_close(out["decoy"], plain["decoy"], atol=1e-3, rtol=1e-3)
    assert out["violation_rate"] == 0.0


def test_max_sensitivity_shares_decoys_between_bases(weights, monkeypatch):
    pytest.importorskip("quantus")
    if not hasattr(np, "trapz"):  # Quantus 0.6.0 calls np.trapz, which NumPy 2 removed
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    solves = []
    original = grid.DecoyEnhanced._solve_decoys
    monkeypatch.setattr(grid.DecoyEnhanced, "_solve_decoys", lambda self, x: solves.append(1) or original(self, x))
    bases = {"Gradient": ("gradient", None), "IG": ("integrated_gradients", {"n_steps": 2})}
    out = grid.max_sensitivity(MODEL, "smoke", weights, [0, 1], [3, 3], bases, DECOY, nr_samples=2, radius=8 / 255)
    for label in bases:
        assert out[label]["base"].shape == out[label]["decoy"].shape == (2,)
        assert torch.isfinite(out[label]["decoy"]).all()
    assert len(solves) == 1 + 2  # x and two perturbed copies, solved once for both bases


def test_randomisation_solves_decoys_only_when_the_layer_changes(weights):
    out = grid.randomisation(MODEL, "smoke", weights, [0], [3], "gradient", None, DECOY)
    assert len(out["decoy"]) == len(out["base"]) and out["decoy"][0]["spearman_abs"] == 1.0
    assert out["decoy_solves"] == 2  # the trained F_ℓ, and once its first convolution is randomised
    assert len(out["decoy_per_image"]) == len(out["decoy"]) and out["decoy_per_image"][0]["spearman_abs"] == [1.0]


def test_paired_intervals_known_answers():
    m = stats.mean_interval([1.0, 2.0, 3.0, float("nan")])
    half = 4.302652729911275 / 3 ** 0.5  # t(0.975, 2 df) · s / √n with s = 1
    assert m["n"] == 3 and m["mean difference"] == 2.0
    assert m["ci_low"] == pytest.approx(2 - half) and m["ci_high"] == pytest.approx(2 + half)
    assert np.isnan(stats.mean_interval([5.0])["ci_low"])
    med = stats.median_interval(np.arange(20.0))
    assert med["median difference"] == 9.5 and med["ci_low"] < 9.5 < med["ci_high"]
    assert med == stats.median_interval(np.arange(20.0))  # seeded
