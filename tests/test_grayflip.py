import numpy as np
import pytest
import torch

from salbook.yardsticks.grayflip import grayflip_curve


@pytest.fixture
def first_pixel(linear_model):
    """Class 0 while pixel 0 is bright (logit 10·x₀ against a constant 1)."""
    return linear_model(torch.tensor([[10.0, 0, 0, 0], [0, 0, 0, 0]]), torch.tensor([0.0, 1.0]))


def test_good_map_keeps_the_decision_until_the_relevant_pixel_goes(first_pixel):
    x = torch.tensor([1.0, 0.2, 0.2, 0.2]).view(1, 1, 2, 2)
    good = torch.tensor([[[4.0, 1.0], [2.0, 3.0]]])
    bad = -good
    taus = (0, 25, 50, 75, 100)
    assert grayflip_curve(first_pixel, x, good, taus, fill=0.0).tolist() == [0, 0, 0, 0, 1]
    assert grayflip_curve(first_pixel, x, bad, taus, fill=0.0).tolist() == [0, 1, 1, 1, 1]
    assert grayflip_curve(first_pixel, x, bad, taus, fill=0.5).tolist() == [0, 0, 0, 0, 0]  # 10·0.5 > 1


def test_ties_are_broken_at_random_but_reproducibly(first_pixel):
    x = torch.tensor([1.0, 0.2, 0.2, 0.2]).repeat(400, 1).view(400, 1, 2, 2)
    flat = torch.zeros(400, 2, 2)  # a map with no information
    curve = grayflip_curve(first_pixel, x, flat, (25,), fill=0.0, seed=1)
    assert 0.15 < curve[0] < 0.35  # pixel 0 is the one filled in about a quarter of the images
    assert np.array_equal(curve, grayflip_curve(first_pixel, x, flat, (25,), fill=0.0, seed=1))


def test_bad_arguments(first_pixel):
    x = torch.rand(1, 1, 2, 2)
    with pytest.raises(ValueError, match="per-pixel"):
        grayflip_curve(first_pixel, x, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        grayflip_curve(first_pixel, x, torch.full((1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="fill"):
        grayflip_curve(first_pixel, x, torch.zeros(1, 2, 2), fill=2.0)
