"""salbook.chapter: the one setup call of every chapter (profile, sizes, record, style, device,
executor, seeds)."""
import random

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from salbook.chapter import chapter

NAME = "decoys/02_fidelity_and_robustness"
SIZES = {"smoke": dict(images=2), "cpu": dict(images=8), "full": dict(images=64)}


@pytest.fixture(autouse=True)
def global_state(monkeypatch):
    """Give back the generators and the figure style the chapter changes; no env overrides."""
    for var in ("PROFILE", "SALBOOK_EXECUTOR", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(), matplotlib.rc_context():
        yield
    random.setstate(py)
    np.random.set_state(npy)


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_the_profile_picks_its_row_of_the_sizes_table():
    ch = chapter(NAME, "cpu", sizes=SIZES)
    assert (ch.profile, ch.sizes) == ("cpu", {"images": 8})
    assert chapter(NAME, "smoke", sizes=SIZES).sizes == {"images": 2}
    assert chapter(NAME, "smoke").sizes == {}  # a chapter without a table


def test_the_profile_comes_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("PROFILE", "smoke")
    assert chapter(NAME, sizes=SIZES).sizes == {"images": 2}


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        chapter(NAME, "fast", sizes=SIZES)


def test_a_sizes_table_without_the_profile_names_it():
    with pytest.raises(KeyError, match=f"{NAME}: SIZES has no entry for the 'full' profile"):
        chapter(NAME, "full", sizes={"smoke": {}, "cpu": {}})


def test_a_sizes_key_that_is_no_profile_is_refused():
    with pytest.raises(ValueError, match="'gpu' that are no profile"):
        chapter(NAME, "cpu", sizes={**SIZES, "gpu": {}})


@pytest.mark.parametrize("name", ["02_fidelity", "decoys/02.md", "a/b/c", ""])
def test_a_name_that_is_no_notebook_path_is_refused(name):
    with pytest.raises(ValueError, match="<part>/<notebook>"):
        chapter(name, "smoke")


def test_the_record_is_named_after_the_chapter_and_its_profile():
    ch = chapter(NAME, "smoke", device="cpu")
    assert (ch.record.notebook, ch.record.profile, ch.name) == (NAME, "smoke", NAME)
    assert ch.record.device.startswith("cpu") and ch.device == torch.device("cpu")
    assert ch.record.claims == [] and ch.record.metrics == {}


def test_the_same_seed_gives_the_same_draws_and_another_seed_others():
    chapter(NAME, "smoke", seed=3)
    first = draws()
    chapter(NAME, "smoke", seed=3)
    assert draws() == first
    chapter(NAME, "smoke", seed=4)
    assert draws() != first
    assert chapter(NAME, "smoke", seed=4).seed == 4


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, None, True])
def test_a_seed_numpy_cannot_take_is_refused(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        chapter(NAME, "smoke", seed=seed)


def test_the_book_style_is_set():
    plt.rcParams.update({"figure.dpi": 50, "axes.titlesize": 20})
    chapter(NAME, "smoke")
    assert plt.rcParams["figure.dpi"] == 110 and plt.rcParams["axes.titlesize"] == 9


def test_the_executor_is_resolved(monkeypatch):
    assert chapter(NAME, "smoke").executor == "local"
    assert chapter(NAME, "smoke", executor="processes").executor == "processes"
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert chapter(NAME, "smoke").executor == "ray"
    with pytest.raises(ValueError, match="unknown executor"):
        chapter(NAME, "smoke", executor="slurm")
