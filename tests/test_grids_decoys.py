import pytest
import torch

from salbook.grids import decoys as grid

MODEL, DECOY = "cifar-resnet8", dict(layer=3, eps=0.3, patch=3, stride=10, steps=5)


def test_fidelity_job_scores_every_variant_and_its_decoys_are_valid():
    bases = {"Gradient": ("gradient", None)}
    out = grid.fidelity_maps(MODEL, "smoke", [0, 1], [3, 3], bases, DECOY)
    maps = out["maps"]["Gradient"]
    assert set(maps) == {"base", "range", "mean", "constant"}
    for m in maps.values():
        assert m.shape == (2, 32, 32) and m.min() >= 0 and m.max() <= 1  # post-processed
    assert set(out["fidelity"]) == {"ratio", "centred"}
    assert out["fidelity"]["ratio"]["Gradient"]["range"].shape == (2,)
    assert out["violation_rate"]["optimised"] == 0.0
    # the same images one at a time give the same maps: decoys and maps do not depend on the batch
    single = grid.fidelity_maps(MODEL, "smoke", [1], [3], bases, DECOY)
    torch.testing.assert_close(single["maps"]["Gradient"]["range"][0], maps["range"][1], atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="one target per image"):
        grid.fidelity_maps(MODEL, "smoke", [0, 1], [3], bases, DECOY)


def test_study_and_attack_jobs():
    study = grid.decoy_study(MODEL, "smoke", [0], DECOY)
    assert study["decoys_per_image"] == 2 * 16 and study["move"].shape == (1, 32)
    assert (study["distance_over_eps"] <= 1 + 1e-3).all() and study["violation_rate"] == 0.0
    out = grid.attack_sensitivity(MODEL, "smoke", [0], "topk", "gradient", None, dict(steps=2), DECOY, c2=0.5)
    assert out["base"].shape == out["decoy"].shape == (1,)
    assert out["maps"]["decoy_adversarial"].shape == (1, 32, 32)
    assert (out["adversarial"] - grid.data.to_input(grid.data.cifar10("test").x[[0]])).abs().max() <= 8 / 255 + 1e-6
