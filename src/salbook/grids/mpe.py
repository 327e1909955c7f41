"""Cached jobs shared by the MPE chapters: a zoo model's MPE table over its training set, its
class probabilities on the test set, and GrabCut object masks of test images.

The MNIST table serves chapters 1–2; the CIFAR-10 tables and test predictions of the 4-layer CNN and
of the ResNet serve chapters 3–5. Each is computed once (:func:`salbook.jobs.cached` locks per job,
so chapters run in parallel wait for one another instead of computing it twice) and cached under
``data/jobs/``. The jobs' parameters include the SHA-256 of the model's weights, so a retrained model
never reuses another model's results. Notebooks call :func:`table`, :func:`test_probs` and
:func:`object_masks`.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .. import data, zoo
from ..jobs import Job, cached
from ..methods.mpe import MPETable, mpe_table
from ..yardsticks.localisation import grabcut_foreground

# Margin of the MPE chapters' accuracy verdicts (rule: verdicts.contains on the Wilson interval of the
# test accuracy or error rate). The paper gives neither architecture nor recipe for its networks;
# networks of one family trained by different recipes differ by about this much (half a point on
# MNIST, two points on CIFAR-10), so a network within the margin is a fair stand-in for the paper's.
ACCURACY_MARGIN = {"mnist": 0.005, "cifar10": 0.02}


def table(model: str, profile: str, n_sampling: int | None = None) -> tuple[MPETable, float]:
    """The MPE table of zoo model ``model`` over the first ``n_sampling`` training images (None: all),
    and the seconds it took to build (when it was built, not loaded)."""
    out = cached(Job(table_job, {"model": model, "profile": profile, "n_sampling": n_sampling,
                                 "weights": _weights(model, profile)}))
    return MPETable(out["sums"], out["counts"], tuple(out["input_shape"])), out["seconds"]


def test_probs(model: str, profile: str) -> torch.Tensor:
    """Softmax outputs ``(10000, c)`` of zoo model ``model`` on its dataset's test images."""
    return cached(Job(test_probs_job, {"model": model, "profile": profile,
                                       "weights": _weights(model, profile)}))["probs"]


def object_masks(indices, seed: int = 0) -> np.ndarray:
    """GrabCut object masks ``(N, 32, 32)`` of the CIFAR-10 test images ``indices`` (see
    :func:`~salbook.yardsticks.localisation.grabcut_foreground`; each mask depends on its image only)."""
    indices = [int(k) for k in indices]
    if not indices:
        return np.zeros((0, 32, 32), bool)
    return cached(Job(object_masks_job, {"indices": indices, "seed": seed}))["masks"].numpy()


def table_job(model: str, profile: str, n_sampling: int | None, weights: str) -> dict:
    """Job: :func:`~salbook.methods.mpe.mpe_table` of a zoo model over its training images."""
    net = zoo.verified(model, profile, weights).model
    x = data.load(zoo.recipe(model).dataset, "train").x[:n_sampling]
    start = time.perf_counter()
    t = mpe_table(net, x, progress=False)
    return {"sums": t.sums, "counts": t.counts, "input_shape": list(t.input_shape),
            "seconds": time.perf_counter() - start}


def test_probs_job(model: str, profile: str, weights: str) -> dict:
    """Job: class probabilities of a zoo model on all test images of its dataset."""
    net = zoo.verified(model, profile, weights).model
    return {"probs": zoo.predict_proba(net, data.load(zoo.recipe(model).dataset, "test").x)}


def object_masks_job(indices: list[int], seed: int) -> dict:
    """Job: GrabCut object masks of CIFAR-10 test images."""
    return {"masks": torch.from_numpy(grabcut_foreground(data.cifar10("test").x[indices], seed=seed))}


def _weights(model: str, profile: str) -> str:
    return zoo.get(model, profile).card["weights_sha256"]
