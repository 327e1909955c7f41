import pytest
import torch

from salbook.grids import roar as grid
from salbook.yardsticks import roar


def image(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 2, 2)


def test_roar_replaces_the_top_entries_and_kar_keeps_them():
    x = image([0.1, 0.2, 0.3, 0.4])
    scores = image([4.0, 3.0, 2.0, 1.0])
    fill = torch.tensor([0.9])
    assert roar.modify(x, scores, 0.5, fill=fill).flatten().tolist() == pytest.approx([0.9, 0.9, 0.3, 0.4])
    assert roar.modify(x, scores, 0.5, keep=True, fill=fill).flatten().tolist() == pytest.approx([0.1, 0.2, 0.9, 0.9])
    assert torch.equal(roar.modify(x, scores, 0.0, fill=fill), x)
    assert torch.equal(roar.modify(x, scores, 1.0, fill=fill), torch.full_like(x, 0.9))


def test_per_pixel_ranking_moves_all_channels_together():
    x = torch.rand(1, 3, 2, 2)
    scores = torch.zeros(1, 3, 2, 2)
    scores[0, 0, 0, 0] = 5.0  # one large channel entry makes pixel (0, 0) the top pixel
    pixel = roar.ranking_scores(scores, "abs", per="pixel")
    assert pixel.shape == (1, 1, 2, 2)
    out = roar.modify(x, pixel, 0.25, fill=torch.zeros(3))
    assert (out[0, :, 0, 0] == 0).all() and torch.equal(out[0, :, 1:, :], x[0, :, 1:, :])


def test_transforms_change_the_ranking_of_negative_scores():
    scores = image([-3.0, 1.0, 2.0, 0.5])
    top = lambda t: roar.top_mask(roar.ranking_scores(scores, t), 0.25).flatten().nonzero().item()  # noqa: E731
    assert top("signed") == 2 and top("square") == 0 and top("abs") == 0


def test_ties_are_broken_at_random_but_reproducibly():
    scores = torch.zeros(4, 1, 8, 8)
    a, b, c = (roar.top_mask(scores, 0.3, seed=s) for s in (0, 0, 1))
    assert (a.flatten(1).sum(1) == int(0.3 * 64)).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_inputs_are_refused():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="fraction"):
        roar.modify(x, x, 1.5)
    with pytest.raises(ValueError, match="do not fit"):
        roar.modify(x, torch.rand(2, 1, 3, 3), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        roar.ranking_scores(torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="unknown transform"):
        roar.ranking_scores(x, "cube")


def test_a_smoke_retraining_is_deterministic_and_removing_everything_leaves_no_signal():
    run = lambda fraction, **kw: grid.retrain("mnist", "mnist-lenet", "smoke", "random", fraction, False, 0, **kw)  # noqa: E731
    clean, again = run(0.3), run(0.3)
    assert clean["test_acc"] == again["test_acc"]
    # every entry replaced by the mean: all test images are identical, so one class is predicted for all
    labels = grid._split("mnist", "mnist-lenet", "smoke", "test", None).y
    assert run(1.0)["test_acc"] <= torch.bincount(torch.from_numpy(labels)).max().item() / len(labels) + 1e-9
    assert 0 <= run(0.5, random_mask="resampled")["test_acc"] <= 1


def test_attribution_maps_report_their_own_duration():
    import time

    t0 = time.perf_counter()
    out = grid.attribution_maps("mnist", "mnist-lenet", "smoke", "gradient", "test", batch_size=200)
    assert out["maps"].shape == (500, 1, 28, 28)
    assert 0 < out["seconds"] <= time.perf_counter() - t0
