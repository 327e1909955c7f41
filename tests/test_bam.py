import dataclasses

import numpy as np
import pytest
import torch

from salbook import data, stats, zoo
from salbook.yardsticks import bam


# --- the data set ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    return data.bam_mnist_on_cifar("test", n=64, seed=0)


def test_shapes_dtypes_and_labels(small):
    assert small.x.shape == small.scene_only.shape == (64, 32, 32, 3)
    assert small.x.dtype == small.scene_only.dtype == np.uint8
    assert small.mask.shape == (64, 32, 32) and small.mask.dtype == bool
    assert small.obj.dtype == small.scene.dtype == np.int64 and len(small) == 64
    assert small.obj.min() >= 0 and small.obj.max() <= 9 and small.scene.min() >= 0 and small.scene.max() <= 9
    cifar = data.cifar10("test")
    assert np.array_equal(small.scene_only, cifar.x[small.index])  # the scene is the CIFAR image, untouched
    assert np.array_equal(small.scene, cifar.y[small.index])  # and its label the CIFAR label
    assert "seed 0" in small.source and "MNIST" in small.source and "CIFAR-10" in small.source


def test_mask_is_exactly_the_changed_pixels_and_a_digit_sized_blob(small):
    changed = (small.x != small.scene_only).any(-1)
    assert np.array_equal(small.mask, changed)
    area = small.mask.sum((1, 2))
    assert area.min() > 0 and area.max() < 20 * 20  # inside the 20×20 digit frame
    for k in range(len(small)):  # every mask fits in one 20×20 window
        r, c = np.nonzero(small.mask[k])
        assert r.max() - r.min() < 20 and c.max() - c.min() < 20


def test_the_pasted_strokes_are_the_labelled_digit(small):
    """Object label and pixels agree: the mask is the recorded MNIST digit's strokes, shifted."""
    mnist = data.mnist("test")
    assert np.array_equal(small.obj, mnist.y[small.digit])
    strokes = torch.nn.functional.interpolate(torch.from_numpy(mnist.x[small.digit]).float()[:, None] / 255, size=(20, 20),
                                              mode="bilinear", antialias=True, align_corners=False)[:, 0].numpy() > 0.5
    for k in range(len(small)):
        fits = [np.pad(strokes[k], ((r, 12 - r), (c, 12 - c))) for r in range(13) for c in range(13)]
        # the mask lies inside the strokes at one offset and misses at most a few coincident pixels
        assert any((small.mask[k] <= f).all() and small.mask[k].sum() >= 0.9 * f.sum() for f in fits)


def test_deterministic_for_a_seed_and_nested_in_n():
    a = data.bam_mnist_on_cifar("test", n=32, seed=3)
    b = data.bam_mnist_on_cifar("test", n=32, seed=3)
    c = data.bam_mnist_on_cifar("test", n=32, seed=4)
    for f in ("x", "scene_only", "obj", "scene", "mask", "index", "digit"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.x, c.x)
    full = data.bam_mnist_on_cifar("test", seed=3)  # a subset gets the same digit at the same place
    assert len(full) == 10000 and np.array_equal(full.index, np.arange(10000))
    assert np.array_equal(full.x[a.index], a.x) and np.array_equal(full.obj[a.index], a.obj)


def test_white_digits_and_argument_checks():
    w = data.bam_mnist_on_cifar("test", n=16, seed=0, colour=False)
    assert (w.x[w.mask] == 255).all()
    coloured = data.bam_mnist_on_cifar("test", n=16, seed=0)
    assert np.array_equal(coloured.obj, w.obj) and np.array_equal(coloured.digit, w.digit)
    assert (coloured.mask ^ w.mask).sum() <= 0.05 * w.mask.sum()  # same strokes, same places
    with pytest.raises(ValueError, match="size"):
        data.bam_mnist_on_cifar("test", n=4, size=40)
    with pytest.raises(ValueError, match="n must"):
        data.bam_mnist_on_cifar("test", n=0)


def test_hue_colours_are_saturated():
    rgb = data._hue_to_rgb(np.array([0, 1 / 3, 2 / 3, 0.5]))
    assert rgb.tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 255, 255]]


def test_load_knows_the_bam_names():
    obj, scene, only = (data.load(n, "test") for n in ("bam-object", "bam-scene", "bam-scene-only"))
    full = data.bam_mnist_on_cifar("test")
    assert np.array_equal(obj.x, scene.x) and np.array_equal(obj.x, full.x)
    assert np.array_equal(obj.y, full.obj) and np.array_equal(scene.y, full.scene)
    assert np.array_equal(only.x, data.cifar10("test").x) and np.array_equal(only.y, scene.y)
    assert obj.source == full.source
    with pytest.raises(ValueError, match="bam-object"):
        data.load("bam-nothing", "test")


# --- the metrics ----------------------------------------------------------------------------------

def _toy(n=6, seed=0):
    """Masks of a 6×6 square at random places in 32×32 (3.5 % of the pixels, so the 99th
    percentile of an object-only map is inside the object)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, 32, 32), bool)
    for k in range(n):
        r, c = rng.integers(0, 26, 2)
        masks[k, r:r + 6, c:c + 6] = True
    return torch.from_numpy(masks)


def test_normalise_follows_bam():
    m = torch.zeros(1, 3, 10, 10)
    m[0, 0] = torch.arange(100.0).reshape(10, 10)  # one channel 0..99, another negative (dropped)
    m[0, 1] = -5
    norm = bam.normalise(m)
    p99 = np.percentile(np.arange(100.0), 99)
    assert norm.shape == (1, 10, 10)
    assert np.allclose(norm[0].ravel(), np.clip(np.arange(100) / p99, 0, 1))
    assert (bam.normalise(torch.full((2, 1, 4, 4), 7.0)) == 0).all()  # a constant map ranks nothing
    assert np.allclose(bam.normalise(3 * m + 0), norm)  # scale-free


def test_mcs_perfect_identical_and_reversed_maps():
    masks = _toy()
    obj_focused = masks[:, None].float().expand(-1, 3, -1, -1)
    scene_focused = (~masks)[:, None].float().expand(-1, 3, -1, -1)
    x, t = torch.rand(6, 3, 32, 32), torch.zeros(6, dtype=torch.long)
    perfect = bam.model_contrast_score(None, None, x, t, t, obj_focused, scene_focused, masks)
    assert perfect.value == pytest.approx(1.0) and perfect.n == 6
    rand = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    same = bam.model_contrast_score(None, None, x, t, t, rand, rand, masks)
    assert same.value == 0.0 and np.all(same.per_image == 0)
    assert bam.model_contrast_score(None, None, x, t, t, scene_focused, obj_focused, masks).value == pytest.approx(-1.0)


def test_region_attribution_is_the_mean_over_the_mask():
    masks = _toy(2)
    maps = torch.zeros(2, 1, 32, 32)
    maps[0, 0][masks[0]] = 1.0
    maps[0, 0, 0, 0] = 100.0  # one outlier pixel: clipped at the 99th percentile, not dominating
    region = bam.region_attribution(maps, masks)
    assert region[0] == pytest.approx(1.0)
    assert region[1] == 0.0  # the map of image 1 is all zeros
    assert np.isnan(bam.region_attribution(maps, torch.zeros(2, 32, 32, dtype=torch.bool))).all()


def test_idr_counts_where_the_object_lowers_the_region():
    masks = _toy(4)
    inside = masks[:, None].float()
    x, t = torch.rand(4, 1, 32, 32), torch.zeros(4, dtype=torch.long)
    # images 0, 1: with the object the region is cold, without it hot (input dependence); 2, 3: reversed
    with_obj = torch.stack([1 - inside[0], 1 - inside[1], inside[2], inside[3]])
    scene_only = torch.stack([inside[0], inside[1], 1 - inside[2], 1 - inside[3]])
    idr = bam.input_dependence_rate(None, x, x, t, with_obj, scene_only, masks)
    assert idr.value == 0.5 and idr.per_image.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert bam.input_dependence_rate(None, x, x, t, inside, inside, masks).value == 0.0  # ties do not count


def test_iir_threshold():
    masks = _toy(2)
    base = masks[:, None].float() + 0.01  # region ≈ 1
    patched = base.clone()
    patched[1] = 1 - masks[1].float() + 0.01  # image 1: the patch moves the attribution off the region
    x, t = torch.rand(2, 1, 32, 32), torch.zeros(2, dtype=torch.long)
    iir = bam.input_independence_rate(None, x, x, t, base, patched, masks)
    assert iir.per_image.tolist() == [1.0, 0.0] and iir.value == 0.5


def test_only_correctly_classified_images_count(linear_model):
    """A linear model that predicts class 1 iff the top-left pixel is bright."""
    w = torch.zeros(2, 32 * 32)
    w[1, 0] = 1.0
    model = linear_model(w, torch.tensor([0.0, -0.5]))
    x = torch.zeros(4, 1, 32, 32)
    x[:2, 0, 0, 0] = 1.0  # images 0, 1 → class 1; images 2, 3 → class 0
    targets = torch.tensor([1, 0, 0, 1])  # correct for 0 and 2 only
    assert bam.correct(model, x, targets).tolist() == [True, False, True, False]
    masks = _toy(4)
    obj = masks[:, None].float()
    score = bam.model_contrast_score(model, None, x, targets, targets, obj, 1 - obj, masks)
    assert score.used.tolist() == [True, False, True, False] and score.n == 2
    assert np.isnan(score.per_image[1]) and score.value == pytest.approx(1.0)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    v = np.random.default_rng(0).normal(0.3, 1, 200)
    a, b = stats.bootstrap_ci(v, seed=1), stats.bootstrap_ci(v, seed=1)
    assert a == b and a["ci_low"] < a["mean"] < a["ci_high"] and a["n"] == 200
    assert a["mean"] == pytest.approx(v.mean())
    assert stats.bootstrap_ci([np.nan])["mean"] is None


# --- the zoo models -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, labels", [("bam-object", "obj"), ("bam-scene", "scene")])
def test_zoo_recipes_name_the_bam_datasets(name, labels):
    r = zoo.recipe(name)
    assert r.dataset == name and not r.augment  # a flipped digit is another digit
    assert data.BAM_DATASETS[r.dataset] == ("x", labels)
    assert r.architecture == zoo.recipe("bam-scene" if name == "bam-object" else "bam-object").architecture


@pytest.mark.parametrize("name, labels", [("bam-object", "obj"), ("bam-scene", "scene")])
def test_zoo_trains_on_the_pasted_images_with_the_recipes_labels(name, labels, tmp_models, monkeypatch):
    """zoo.train reads the BAM set through data.load: the images are the pasted ones, the labels the
    recipe's (digit or scene), and the card names the BAM source."""
    r = dataclasses.replace(zoo.RECIPES[name], name="tiny-bam", epochs={"smoke": 1}, train_size={"smoke": 64})
    monkeypatch.setitem(zoo.RECIPES, "tiny-bam", r)
    seen = {}

    def capture(model, x, y, recipe, epochs, **kw):
        seen.update(x=x, y=y)
        return 0.0

    monkeypatch.setattr(zoo, "fit", capture)
    card = zoo.get("tiny-bam", "smoke", device="cpu").card
    bam_set = data.bam_mnist_on_cifar("train")
    idx, _ = zoo.split_indices(len(bam_set), r.val_size, r.seed)
    assert torch.equal(seen["x"], data.to_input(bam_set.x[idx[:64]]))
    assert torch.equal(seen["y"], torch.from_numpy(getattr(bam_set, labels)[idx[:64]]))
    assert card["data_source"] == bam_set.source and 0 <= card["test_acc"] <= 1


def test_nan_maps_are_refused_not_clipped_to_zero():
    maps = torch.rand(2, 3, 8, 8)
    maps[1, 0, 4, 4] = float("nan")
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 2:5] = True
    for call in (lambda: bam.normalise(maps), lambda: bam.normalise(maps.numpy()),
                 lambda: bam.region_attribution(maps, masks),
                 lambda: bam.model_contrast_score(None, None, maps, 0, 0, maps, torch.rand(2, 3, 8, 8), masks),
                 lambda: bam.input_dependence_rate(None, maps, maps, 0, torch.rand(2, 3, 8, 8), maps, masks)):
        with pytest.raises(ValueError, match="NaN"):
            call()
    inf = torch.rand(2, 8, 8)
    inf[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="1 of 2 maps"):
        bam.normalise(inf)
