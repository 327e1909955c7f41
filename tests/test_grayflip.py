import numpy as np
import pytest
import torch

from salbook.yardsticks.grayflip import flip_ranks, grayflip_changes


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


def test_the_three_tie_readings_on_a_flat_map(first_pixel):
    """A constant map: "<" fills nothing below τ = 100 quantile (nothing is strictly below), "<=" fills
    everything from τ = 0, and the random tie rule fills the ⌊τ·HW⌋ pixels in random order."""
    x = torch.tensor([1.0, 0.2, 0.2, 0.2]).view(1, 1, 2, 2)
    flat = {"flat": torch.zeros(1, 2, 2)}
    taus = (0, 50, 100)
    assert grayflip_changes(first_pixel, x, flat, taus, fill=0.0, ties="<")["flat"].tolist() == [[False, False, False]]
    assert grayflip_changes(first_pixel, x, flat, taus, fill=0.0, ties="<=")["flat"].tolist() == [[True, True, True]]
    rnd = grayflip_changes(first_pixel, x, flat, taus, fill=0.0)["flat"]
    assert rnd[0, 0] == False and rnd[0, 2] == True  # noqa: E712
    with pytest.raises(ValueError, match="ties must be"):
        grayflip_changes(first_pixel, x, flat, taus, ties="≤")


def test_quantile_readings_agree_with_ranks_without_ties(cnn):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 16, 16, generator=gen)
    scores = {"m": torch.randn(4, 16, 16, generator=gen)}
    taus = (0, 25, 50, 75, 100)
    rank = grayflip_changes(cnn, x, scores, taus, fill=0.5)["m"]
    strict = grayflip_changes(cnn, x, scores, taus, fill=0.5, ties="<")["m"]
    # at τ = 0 and 100 the strict reading fills nothing / all but the top pixel; in between, with
    # 256 distinct scores, "< q_τ" is the ⌊τ·256⌋ lowest pixels up to the interpolated one
    assert strict[:, 0].tolist() == [False] * 4 and rank.shape == strict.shape


def test_tied_share():
    from salbook.yardsticks.grayflip import tied_share

    m = torch.tensor([[[0.0, 0.0], [1.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [2.0, 3.0]]])
    assert tied_share(m).tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="NaN"):
        tied_share(torch.full((1, 2, 2), float("nan")))
    with pytest.raises(TypeError, match="floating"):
        tied_share(torch.zeros((1, 2, 2), dtype=torch.long))


def test_best_is_separated_only_when_its_interval_says_so():
    from salbook import verdicts
    from salbook.yardsticks.grayflip import best_and_runner_up, curve_areas

    assert curve_areas(np.array([[0, 1, 1]]), (0, 50, 100)).tolist() == [0.75]
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 60)
    clear = {"A": base, "B": base + 0.1, "C": base + 0.3}
    best, second, iv = best_and_runner_up(clear)
    assert (best, second) == ("A", "B") and verdicts.exceeds(iv, 0.0).verdict == "reproduced"
    close = {"A": base, "B": base + rng.normal(0.002, 0.05, 60)}
    assert verdicts.exceeds(best_and_runner_up(close)[2], 0.0).verdict != "reproduced"
    with pytest.raises(ValueError):
        best_and_runner_up({"A": base})


def test_max_abs_mean_difference_covers_the_largest_gap():
    from salbook.yardsticks.grayflip import max_abs_mean_difference

    rng = np.random.default_rng(0)
    diffs = {"A": rng.normal(0.0, 0.05, 100), "B": rng.normal(-0.3, 0.05, 100)}
    which, iv = max_abs_mean_difference(diffs)
    assert which == "B" and iv.lo <= 0.3 <= iv.hi + 0.02 and iv.lo > 0.25
    with pytest.raises(ValueError):
        max_abs_mean_difference({"A": np.array([np.nan, 0.0])})


def test_flip_ranks_lowest_score_first_ties_by_seed():
    scores = torch.tensor([[[[0.5, 0.1], [0.5, 0.9]]]])  # (1, 1, 2, 2): 0.1 first, 0.9 last
    ranks = flip_ranks(scores, seed=0)
    assert ranks.shape == (1, 4)
    assert ranks[0, 1] == 0 and ranks[0, 3] == 3 and set(ranks[0, [0, 2]].tolist()) == {1, 2}
    assert torch.equal(ranks, flip_ranks(scores, seed=0))
    tied = torch.zeros(1, 1, 8, 8)
    assert not torch.equal(flip_ranks(tied, seed=0), flip_ranks(tied, seed=1))
    assert sorted(flip_ranks(tied, seed=0)[0].tolist()) == list(range(64))
