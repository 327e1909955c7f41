import numpy as np
import pytest

from salbook import data

from salbook.yardsticks.localisation import grabcut_foreground, outside_excess, outside_share


def test_grabcut_finds_a_bright_square_on_a_dark_background():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 10:22, 8:24] = (230, 60, 40)
    rng = np.random.default_rng(0)
    img = np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
    mask = grabcut_foreground(img)[0]
    truth = np.zeros((32, 32), bool)
    truth[10:22, 8:24] = True
    assert (mask == truth).mean() > 0.95


def test_outside_share_against_area():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2] = True  # top half is the object
    share = outside_share([np.array([0, 1, 12, 13]), np.array([5])], masks)  # image 1 has no object: skipped
    assert share == {"outside": 0.5, "background_area": 0.5, "n_pixels": 4, "n_images": 1}
    with pytest.raises(ValueError, match="uint8 RGB"):
        grabcut_foreground(np.zeros((1, 8, 8), np.uint8))


def test_a_mask_does_not_depend_on_the_other_images():
    images = data.cifar10("test").x[[2, 5, 8]]  # images whose GrabCut mask depends on the random start
    assert not np.array_equal(grabcut_foreground(images, seed=0), grabcut_foreground(images, seed=1))
    together = grabcut_foreground(images)
    for k in range(3):
        assert np.array_equal(grabcut_foreground(images[k:k + 1])[0], together[k])


def test_outside_excess_against_chance():
    masks = np.zeros((3, 4, 4), bool)
    masks[:, :2] = True  # top half is the object: chance puts half the pixels outside
    out = [np.array([8, 9, 10]), np.array([12]), np.array([14, 15])]  # all in the bottom half
    inside = [np.array([0, 1]), np.array([5]), np.array([7, 6, 4])]
    mixed = [np.array([0, 8]), np.array([1, 9]), np.array([2, 10])]
    above, below, even = (outside_excess(p, masks) for p in (out, inside, mixed))
    assert above.estimate == above.lo == above.hi == 0.5  # every image alike: no spread
    assert below.estimate == -0.5 and even.estimate == 0.0
    spread = outside_excess([np.array([8, 9]), np.array([0, 1]), np.array([12, 2])], masks)
    assert spread.lo < spread.estimate == 0.0 < spread.hi  # images disagree: the interval says so
    with pytest.raises(ValueError, match="nothing to compare"):
        outside_excess([np.array([], int)] * 3, masks)
