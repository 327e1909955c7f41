import numpy as np
import pytest

from salbook import data

from salbook.yardsticks.localisation import grabcut_foreground, outside_share


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
