import numpy as np
import pytest
import torch
from torch import nn


@pytest.fixture
def tmp_data(tmp_path, monkeypatch):
    """An empty data cache folder for the test (the real mirror stays the default)."""
    monkeypatch.setenv("SALBOOK_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def tmp_models(tmp_path, monkeypatch):
    """An empty model and job cache for the test that shares the session's decoded datasets
    (decoding MNIST or CIFAR-10 from the mirror takes tens of seconds; tests of the data layer
    itself use ``tmp_data``)."""
    from salbook import config

    shared = config.data_dir() / "datasets"
    shared.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "data"
    root.mkdir()
    (root / "datasets").symlink_to(shared, target_is_directory=True)
    monkeypatch.setenv("SALBOOK_DATA", str(root))
    return root


class Linear(nn.Module):
    """A tiny classifier on (N, 1, H, W) inputs in [0, 1]: logits = W · flatten(x) + b."""

    def __init__(self, weight, bias=None):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.fc.bias.copy_(torch.zeros(weight.shape[0]) if bias is None else torch.as_tensor(bias))

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.fixture
def linear_model():
    return Linear


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def cnn():
    """A seeded one-convolution classifier of 16×16 RGB images into 10 classes (attack tests)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)).eval()


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The whole book executed under the smoke profile and built, once per test session, in a copy of the
    project (tests/test_book.py checks the notebooks and records, tests/test_browser.py the pages).
    Returns ``(root, seconds per notebook, results folder)``."""
    import shutil

    from salbook import book, config

    tmp = tmp_path_factory.mktemp("smoke-book")
    root = tmp / "book-root"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(config.PROJECT_ROOT / name, root / name)
    shutil.copytree(config.PROJECT_ROOT / "notebooks", root / "notebooks")
    shutil.copytree(config.PROJECT_ROOT / "book", root / "book", ignore=shutil.ignore_patterns("notebooks"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SALBOOK_RESULTS", str(tmp / "results"))
        seconds = book.run("smoke", root=root)
        book.build(root)
    return root, seconds, tmp / "results"
