import shutil

import numpy as np
import pytest
import torch

from salbook import config, data


def test_mnist_shapes_labels_and_source():
    train, test = data.mnist("train"), data.mnist("test")
    assert train.x.shape == (60000, 28, 28) and train.x.dtype == np.uint8
    assert test.x.shape == (10000, 28, 28) and test.y.dtype == np.int64
    assert np.bincount(train.y)[:3].tolist() == [5923, 6742, 5958]  # the official class counts
    assert np.bincount(test.y)[:2].tolist() == [980, 1135]
    assert "MNIST original release" in train.source


def test_cifar10_shapes_and_source():
    train, test = data.cifar10("train"), data.cifar10("test")
    assert train.x.shape == (50000, 32, 32, 3) and test.x.shape == (10000, 32, 32, 3)
    assert np.bincount(train.y).tolist() == [5000] * 10
    assert "JPEG" in train.source or "original release" in train.source


def test_any_prefix_of_the_cifar10_mirror_holds_every_class():
    """The mirror is sorted by class; the data layer puts it in a fixed seeded order (as the original
    release is), so "the first 200 test images" is a sample of all ten classes."""
    test = data.cifar10("test")
    if test.source != data.SOURCES["cifar10", "mirror"]:
        pytest.skip("the original release is in its own order")
    counts = np.bincount(test.y[:200], minlength=10)
    assert counts.min() >= 8 and counts.sum() == 200
    with np.load(config.mirror_dir() / "cifar10_jpeg.npz") as f:
        mirror_labels = f["y_test"]
    assert np.array_equal(test.y, mirror_labels[data.mirror_order(10000)])


def test_a_cache_of_an_older_version_is_rebuilt(tmp_data):
    fresh = data.load("mnist", "test")
    with np.load(data.cache_path("mnist")) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["cache_version"] = np.array(data.CACHE_VERSION - 1)
    np.savez(data.cache_path("mnist"), **arrays)
    with pytest.warns(UserWarning, match="cache version"):
        again = data.load("mnist", "test")
    assert np.array_equal(again.x, fresh.x)


def test_mirror_checksum_catches_truncated_file(tmp_path, tmp_data, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    original = config.mirror_dir() / "mnist.npz"
    (mirror / "mnist.npz").write_bytes(original.read_bytes()[:100_000])  # truncated copy
    monkeypatch.setenv("SALBOOK_MIRROR", str(mirror))
    with pytest.raises(data.DataIntegrityError, match="corrupt or truncated"):
        data.load("mnist", "test", download=False)
    assert not data.cache_path("mnist").exists()  # nothing half-written


def test_missing_file_error_names_file_and_three_ways(tmp_path, tmp_data, monkeypatch):
    monkeypatch.setenv("SALBOOK_MIRROR", str(tmp_path / "empty"))
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("mnist", "train", download=False)
    msg = str(err.value)
    assert "mnist.npz" in msg and "is missing" in msg
    assert "1. offline mirror" in msg and "2. internet" in msg and "3. cache" in msg


def test_download_fallback_and_atomic_cache(tmp_path, tmp_data, monkeypatch):
    """No mirror: torchvision's download is used, its source recorded, and the cache written."""
    import torchvision

    class FakeMNIST:
        def __init__(self, root, train, download):
            n = 60000 if train else 10000
            self.data = torch.zeros(n, 28, 28, dtype=torch.uint8)
            self.targets = torch.arange(n) % 10

    monkeypatch.setenv("SALBOOK_MIRROR", str(tmp_path / "empty"))
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    split = data.load("mnist", "test")
    assert split.source == data.SOURCES["mnist", "download"]
    assert data.cache_path("mnist").exists()
    assert not list(data.cache_path("mnist").parent.glob(".*tmp*"))  # no temporary left behind
    monkeypatch.setattr(torchvision.datasets, "MNIST", None)  # the cache now answers alone
    assert data.load("mnist", "test").source == split.source


def test_damaged_cache_is_rebuilt_from_mirror(tmp_data):
    path = data.cache_path("mnist")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable dataset cache"):
        split = data.load("mnist", "test")
    assert split.x.shape == (10000, 28, 28)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="unknown split"):
        data.load("mnist", "val")


def test_to_input_layout_and_range():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    t = data.to_input(x)
    assert t.shape == (2, 3, 4, 4) and t.dtype == torch.float32
    assert torch.equal(t[0, 1, 2, 3], torch.tensor(x[0, 2, 3, 1] / 255, dtype=torch.float32))
    assert np.array_equal(data.to_images(t), x)
    with pytest.raises(TypeError, match="uint8"):
        data.to_input(x.astype(np.float32))
