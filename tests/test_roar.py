import numpy as np
import pytest
import torch

from salbook import data
from salbook.grids import roar as grid
from salbook.methods import registry
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


def test_ranks_order_every_image_and_threshold_to_the_top_mask_of_any_fraction():
    scores = torch.randn(3, 2, 4, 4)
    rank = roar.ranks(scores, seed=0)
    assert rank.shape == scores.shape and rank.dtype == torch.int32
    for row, s in zip(rank.flatten(1), scores.flatten(1)):
        assert sorted(row.tolist()) == list(range(32))
        assert torch.equal(s[row.argsort()], s.sort(descending=True).values)  # rank 0 = highest score
    for t in (0.0, 0.3, 0.5, 1.0):
        assert torch.equal(roar.mask_from_ranks(rank, t), roar.top_mask(scores, t, seed=0))
        assert (roar.mask_from_ranks(rank, t).flatten(1).sum(1) == int(t * 32)).all()


@pytest.mark.parametrize("per", roar.GRANULARITY)
def test_the_random_control_selects_exactly_t_of_each_image_uniformly_and_reproducibly(per):
    random_mask = lambda seed, t=0.2: roar.top_mask(roar.ranking_scores(  # noqa: E731
        registry.make("random", None, seed=seed).attribute(torch.zeros(400, 3, 5, 5)), per=per), t)
    mask = random_mask(3)
    assert mask.shape == ((400, 3, 5, 5) if per == "channel" else (400, 1, 5, 5))
    assert (mask.flatten(1).sum(1) == int(0.2 * mask[0].numel())).all()
    assert torch.equal(mask, random_mask(3)) and not torch.equal(mask, random_mask(4))
    share = mask.flatten(1).double().mean(0)  # every entry (or pixel) is chosen with probability t
    assert share.min() > 0.12 and share.max() < 0.28
    assert not random_mask(0, 0.0).any() and random_mask(0, 1.0).all()


def test_replace_fills_the_mask_for_roar_and_its_complement_for_kar():
    x = torch.rand(2, 3, 4, 4)
    top = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    top[:, :, 0, 0] = True
    fill = torch.tensor([0.1, 0.2, 0.3])
    removed, kept = roar.replace(x, top, fill=fill), roar.replace(x, top, keep=True, fill=fill)
    assert torch.equal(removed[:, :, 0, 0], fill.expand(2, 3)) and torch.equal(removed[:, :, 1:], x[:, :, 1:])
    assert torch.equal(kept[:, :, 0, 0], x[:, :, 0, 0]) and torch.equal(kept[:, :, 1:], fill.view(1, 3, 1, 1).expand(2, 3, 3, 4))


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
    with pytest.raises(ValueError, match="NaN"):
        roar.ranks(torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="fraction"):
        roar.top_mask(x, -0.1)
    with pytest.raises(ValueError, match="random_mask"):
        grid.retrain("mnist", "mnist-lenet", "smoke", "random", 0.5, False, 0, random_mask="sometimes")
    with pytest.raises(ValueError, match="granularity"):
        grid.retrain("mnist", "mnist-lenet", "smoke", "random", 0.5, False, 0, per="patch")


def test_a_smoke_retraining_is_deterministic_and_removing_everything_leaves_no_signal():
    run = lambda fraction, **kw: grid.retrain("mnist", "mnist-lenet", "smoke", "random", fraction, False, 0,  # noqa: E731
                                              train_size=600, test_size=300, **kw)
    clean, again = run(0.3), run(0.3)
    assert clean["test_acc"] == again["test_acc"]
    assert clean["test_correct"].shape == (300,) and clean["test_correct"].float().mean().item() == pytest.approx(clean["test_acc"])
    # every entry replaced by the mean: all test images are identical, so one class is predicted for all
    labels = grid.images("mnist", "mnist-lenet", "smoke", "test", None, 300).y
    assert run(1.0)["test_acc"] <= torch.bincount(torch.from_numpy(labels)).max().item() / len(labels) + 1e-9
    assert 0 <= run(0.5, random_mask="resampled")["test_acc"] <= 1


def test_a_retraining_recipe_can_differ_from_the_zoo_recipe():
    base = dict(dataset="mnist", model="mnist-lenet", profile="smoke", method="random", fraction=0.0, keep=False, seed=0,
                train_size=600, test_size=300)
    plain = grid.retrain(**base)
    faster = grid.retrain(**base, epochs=2, recipe={"batch_size": 32, "lr": 0.05, "schedule": "onecycle", "nesterov": True})
    assert faster["test_acc"] != plain["test_acc"]
    with pytest.raises(TypeError):
        grid.retrain(**base, recipe={"learning_rate": 0.1})


def test_the_training_subset_is_a_prefix_of_the_zoo_models_training_order():
    small = grid.images("mnist", "mnist-lenet", "smoke", "train", 100, None)
    default = grid.images("mnist", "mnist-lenet", "smoke", "train", None, None)
    assert len(small) == 100 and len(default) == 2000  # the zoo recipe's smoke subset
    assert (small.x == default.x[:100]).all() and (small.y == default.y[:100]).all()


def test_attribution_maps_report_their_own_duration():
    import time

    t0 = time.perf_counter()
    out = grid.attribution_maps("mnist", "mnist-lenet", "smoke", "gradient", "test", test_size=300, batch_size=200)
    assert out["maps"].shape == (300, 1, 28, 28)
    assert 0 < out["seconds"] <= time.perf_counter() - t0


def test_the_smoothgrad_family_comes_from_one_draw_of_noisy_gradients():
    args = dict(dataset="mnist", model="mnist-lenet", profile="smoke", split="test", options={"samples": 4},
                test_size=40)
    sg, sq, var = (grid.attribution_maps(method=m, **args)["maps"] for m in ("smoothgrad", "smoothgrad_sq", "vargrad"))
    assert torch.allclose(var, sq - sg.square()) and (var >= -1e-6).all() and (sq >= 0).all()
    # the registry's method with the same options draws the same noise: the same maps
    net = grid._explained("mnist-lenet", "smoke", None)
    x = data.to_input(grid.images("mnist", "mnist-lenet", "smoke", "test", None, 40).x)
    assert torch.allclose(registry.make("smoothgrad_sq", net, samples=4).attribute(x), sq, atol=1e-6)
    # no noise: every sample is the plain gradient, its variance is zero
    args["options"] = {"samples": 3, "noise": 0.0}
    grad = grid.attribution_maps(method="gradient", **{**args, "options": None})["maps"]
    assert torch.allclose(grid.attribution_maps(method="smoothgrad", **args)["maps"], grad, atol=1e-6)
    assert torch.allclose(grid.attribution_maps(method="vargrad", **args)["maps"], torch.zeros_like(grad), atol=1e-9)


def test_jobs_built_for_other_weights_are_refused():
    with pytest.raises(ValueError, match="weights"):
        grid.attribution_maps("mnist", "mnist-lenet", "smoke", "gradient", "test", test_size=10, weights="0" * 64)
    from salbook import zoo
    sha = zoo.get("mnist-lenet", "smoke").card["weights_sha256"]
    assert grid.attribution_maps("mnist", "mnist-lenet", "smoke", "gradient", "test", test_size=10, weights=sha)["maps"].shape[0] == 10


def test_a_ranking_is_computed_once_per_map_and_shared_by_every_fraction():
    args = dict(dataset="mnist", model="mnist-lenet", profile="smoke", method="gradient", split="test", test_size=50)
    rank = grid.ranking(**args)["ranks"]
    assert rank.dtype == torch.int16 and rank.shape == (50, 1, 28, 28)
    maps = grid.attribution_maps(**args)["maps"]
    assert torch.equal(rank.int(), roar.ranks(roar.ranking_scores(maps), seed=0))


def test_modify_refuses_nan_or_infinite_scores_and_names_how_many_maps():
    x = torch.rand(3, 1, 4, 4)
    scores = torch.rand(3, 1, 4, 4)
    scores[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="1 of 3 maps"):
        roar.modify(x, scores, 0.5)
    scores[1, 0, 2, 2], scores[2, 0, 0, 0] = 0.0, float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        roar.modify(x, scores, 0.5, keep=True)
    with pytest.raises(ValueError, match="one map per input"):
        roar.modify(x, torch.rand(2, 1, 4, 4), 0.5)
    with pytest.raises(TypeError, match="floating point"):
        roar.ranking_scores(torch.ones(1, 1, 2, 2, dtype=torch.long))


def test_accuracy_gap_known_answer():
    from scipy import stats

    a = [[1, 1, 0, 0], [1, 0, 1, 0]]  # two seeds at 50 %
    b = [[0, 0, 0, 0], [0, 0, 0, 0]]  # two seeds at 0 %: no seed-to-seed spread anywhere
    gap = roar.accuracy_gap(a, b)
    # per-image difference of seed means: 1, .5, .5, 0 -> variance 1/6 (ddof 1), over 4 images; t with 2 df
    half = stats.t.ppf(0.975, 2) * (1 / 6 / 4) ** 0.5
    assert gap.estimate == pytest.approx(0.5) and gap.lo == pytest.approx(0.5 - half) and gap.hi == pytest.approx(0.5 + half)
    assert "2 vs 2 seeds" in gap.how and "4 test images" in gap.how
    # arm B's seeds now disagree (0 % and 50 %): per-image variance 1.25/3 over 4 images, plus B's seed
    # part: accuracy variance 1/8 less the seed x image mean square (1/6) over 4 images, over 2 seeds
    wider = roar.accuracy_gap(a, [[0, 0, 0, 0], [0, 0, 1, 1]])
    half = stats.t.ppf(0.975, 2) * (1.25 / 3 / 4 + (1 / 8 - 1 / 6 / 4) / 2) ** 0.5
    assert wider.estimate == pytest.approx(0.25) and wider.hi == pytest.approx(0.25 + half)


def test_accuracy_gap_narrows_with_seeds_and_images_and_refuses_one_seed():
    rng = np.random.default_rng(0)
    draw = lambda seeds, images, p: (rng.random((seeds, images)) < p).astype(np.uint8)  # noqa: E731
    small = roar.accuracy_gap(draw(3, 500, 0.6), draw(3, 500, 0.5))
    large = roar.accuracy_gap(draw(10, 5000, 0.6), draw(10, 5000, 0.5))
    assert large.hi - large.lo < (small.hi - small.lo) / 2
    # a seed effect (whole retrainings better or worse) widens the interval beyond the images' share
    shifted = roar.accuracy_gap(np.stack([draw(1, 500, p)[0] for p in (0.4, 0.6, 0.8)]), draw(3, 500, 0.5))
    assert shifted.hi - shifted.lo > 2 * (small.hi - small.lo)
    # independent images and seeds: the half-width is t(18) times the binomial standard error of the difference
    from scipy import stats
    expected = stats.t.ppf(0.975, 18) * ((0.6 * 0.4 + 0.5 * 0.5) / 10 / 5000) ** 0.5
    assert (large.hi - large.lo) / 2 == pytest.approx(expected, rel=0.1)
    with pytest.raises(ValueError, match="two seeds per arm"):
        roar.accuracy_gap(draw(1, 50, 0.5), draw(3, 50, 0.5))
    with pytest.raises(ValueError, match="same test images"):
        roar.accuracy_gap(draw(2, 50, 0.5), draw(2, 40, 0.5))
    with pytest.raises(ValueError, match="0/1"):
        roar.accuracy_gap([[0.5, 1.0], [1.0, 1.0]], draw(2, 2, 0.5))


def test_no_better_than_random_on_accuracy_gaps_reaches_every_verdict_and_needs_three_seeds():
    from salbook import verdicts

    n = 10000
    rng = np.random.default_rng(1)

    def arm(seeds, p):  # seeds of a retraining that gets each test image right with probability p
        return (rng.random((seeds, n)) < p).astype(np.uint8)

    margin = 0.02
    random3 = arm(3, 0.5)
    # "method better" = random's accuracy minus the method's (ROAR: lower accuracy is better)
    tie = verdicts.no_better_than(roar.accuracy_gap(random3, arm(3, 0.5)), margin, n_seeds=3)
    far = verdicts.no_better_than(roar.accuracy_gap(random3, arm(3, 0.3)), margin, n_seeds=3)
    few = verdicts.no_better_than(roar.accuracy_gap(arm(2, 0.5), arm(2, 0.5)), margin, n_seeds=2)
    assert (tie.verdict, far.verdict, few.verdict) == ("reproduced", "not reproduced", "partly")
    # better than random by less than the margin, on too few seeds: partly at most
    slightly = verdicts.no_better_than(roar.accuracy_gap(arm(2, 0.5), arm(2, 0.49)), margin, n_seeds=2)
    assert slightly.verdict == "partly"


def test_the_random_control_is_the_registrys_random_method():
    args = dict(dataset="mnist", model="mnist-lenet", profile="smoke", method="random", split="test", test_size=20,
                options={"seed": 3})
    maps = grid.attribution_maps(**args)["maps"]
    assert torch.equal(maps, registry.make("random", None, seed=3).attribute(torch.zeros(20, 1, 28, 28)))
    transform = grid._resampled("random", None, None, 0.5, False, torch.zeros(1), "square", "channel", seed=0)
    x = torch.rand(8, 1, 28, 28)
    first, again, other = transform(x, [0], 0), transform(x, [0], 0), transform(x, [0], 1)
    assert torch.equal(first, again) and not torch.equal(first, other)  # a new mask every epoch, seeded
    assert ((first == 0).flatten(1).sum(1) >= 392).all()  # half of every image filled
