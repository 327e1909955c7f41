import numpy as np
import pytest
import torch

from salbook.yardsticks.grayflip import grayflip_changes


@pytest.fixture
def first_pixel(linear_model):
    """Class 0 while pixel 0 is bright (logit 10·x₀ against a constant 1)."""
    return linear_model(torch.tensor([[10.0, 0, 0, 0], [0, 0, 0, 0]]), torch.tensor([0.0, 1.0]))


def test_good_map_keeps_the_decision_until_the_relevant_pixel_goes(first_pixel):
    x = torch.tensor([1.0, 0.2, 0.2, 0.2]).view(1, 1, 2, 2)
    good = torch.tensor([[[4.0, 1.0], [2.0, 3.0]]])
    taus = (0, 25, 50, 75, 100)
    black = grayflip_changes(first_pixel, x, {"good": good, "bad": -good}, taus, fill=0.0)
    assert black["good"].tolist() == [[False, False, False, False, True]]
    assert black["bad"].tolist() == [[False, True, True, True, True]]
    gray = grayflip_changes(first_pixel, x, {"bad": -good}, taus, fill=0.5)
    assert gray["bad"].tolist() == [[False] * 5]  # 10·0.5 > 1


def test_changes_match_filling_one_threshold_at_a_time(cnn):
    """Against the definition, τ by τ and image by image, on a network with ten classes."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 16, 16, generator=gen)
    scores = torch.randn(7, 16, 16, generator=gen)
    taus = (0, 10, 33, 50, 90, 100)
    changed = grayflip_changes(cnn, x, {"m": scores}, taus, fill=0.3, seed=4, batch_size=16)["m"]
    assert changed.shape == (7, 6) and changed.dtype == bool and changed[:, 1:].any()
    with torch.no_grad():
        base = cnn(x).argmax(1)
        for j, tau in enumerate(taus):
            k = int(np.floor(tau / 100 * 256))
            for n in range(7):
                filled = torch.zeros(256, dtype=torch.bool)
                filled[scores[n].flatten().argsort()[:k]] = True  # no ties in continuous scores
                flipped = torch.where(filled.view(1, 1, 16, 16), torch.tensor(0.3), x[n:n + 1])
                assert changed[n, j] == (cnn(flipped).argmax(1) != base[n]).item(), (tau, n)


def test_ties_are_broken_at_random_but_reproducibly(first_pixel):
    x = torch.tensor([1.0, 0.2, 0.2, 0.2]).repeat(400, 1).view(400, 1, 2, 2)
    flat = {"flat": torch.zeros(400, 2, 2)}  # a map with no information
    changed = grayflip_changes(first_pixel, x, flat, (25,), fill=0.0, seed=1)["flat"]
    assert 0.15 < changed.mean() < 0.35  # pixel 0 is the one filled in about a quarter of the images
    assert np.array_equal(changed, grayflip_changes(first_pixel, x, flat, (25,), fill=0.0, seed=1)["flat"])


def test_bad_arguments(first_pixel):
    x = torch.rand(1, 1, 2, 2)
    with pytest.raises(ValueError, match="per-pixel"):
        grayflip_changes(first_pixel, x, {"m": torch.zeros(1, 1, 2, 2)})
    with pytest.raises(ValueError, match="NaN"):
        grayflip_changes(first_pixel, x, {"m": torch.full((1, 2, 2), float("nan"))})
    with pytest.raises(ValueError, match="fill"):
        grayflip_changes(first_pixel, x, {"m": torch.zeros(1, 2, 2)}, fill=2.0)
