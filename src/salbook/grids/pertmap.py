"""The PertMap benchmark grid as jobs of :mod:`salbook.jobs`: the maps of one method for one batch of
CIFAR-10 test images, and the test-set predictions both PertMap chapters choose their images from.
The benchmark notebook splits its images into batches and runs every (method, batch) pair, here or on
a Ray cluster; a killed run resumes with the batches not yet done.

Every job names the model's weights (its card's ``weights_sha256``), so a retrained model never
reuses results computed with other weights. Inside a job the network runs channels-last (the faster
layout for convolutions; the maps agree with the default layout up to float rounding).
"""
from __future__ import annotations

import time

import torch

from .. import config, data, zoo
from ..methods import registry

# Captum's occlusion evaluates 64 windows of every image in one pass: one image per call keeps a CPU's
# passes small enough to stay in cache (a speed setting only: the maps are the same)
ONE_IMAGE_PER_CALL_ON_CPU = ("occlusion",)


def network(model: str, profile: str, weights: str) -> torch.nn.Module:
    """Zoo model ``model``, channels-last, after checking that its weights are the ones named."""
    return zoo.verified(model, profile, weights).model.to(memory_format=torch.channels_last)


def test_predictions(model: str, profile: str, weights: str) -> dict:
    """Predicted class of every CIFAR-10 test image (``pred``), by zoo model ``model`` with ``weights``."""
    net = network(model, profile, weights)
    with torch.no_grad():
        return {"pred": zoo.predict_proba(net, data.cifar10("test").x, batch_size=64).argmax(1)}


def method_maps(model: str, profile: str, weights: str, method: str, options: dict | None, indices: list[int],
                targets: list[int]) -> dict:
    """Raw maps of ``method`` (a :mod:`~salbook.methods.registry` name) for the CIFAR-10 test images
    ``indices`` and classes ``targets``, the seconds they took, and for LP PertMap its boxes (``upper``,
    ``lower``), slacks and per-image solver facts (``info``: feasibility, slack, largest constraint
    residual, binding constraints)."""
    if len(indices) != len(targets):
        raise ValueError(f"{len(indices)} images but {len(targets)} targets: give one target per image")
    net = network(model, profile, weights)
    device = config.default_device()
    x = data.to_input(data.cifar10("test").x[list(indices)], device)
    e = registry.make(method, net, **(options or {}))
    per_call = 1 if method in ONE_IMAGE_PER_CALL_ON_CPU and device.type == "cpu" else len(x)
    start = time.perf_counter()
    maps = registry.explain(e, x, torch.as_tensor(targets), batch_size=per_call).detach().cpu()
    result = {"maps": maps.contiguous(), "seconds": time.perf_counter() - start}
    for name in ("upper", "lower", "slack", "info"):
        if getattr(e, name, None) is not None:
            result[name] = getattr(e, name)
    return result


def stochastic_study(model: str, profile: str, weights: str, indices: list[int], targets: list[int], lams: list[float],
                     C: float, iterations: int, samples: int, tol: float, window: int, seed: int) -> dict:
    """Stochastic PertMap for the CIFAR-10 test images ``indices`` at every penalty weight in ``lams``
    (multiples of d) in one optimisation (row ``k·n + i``: image i at ``lams[k]``), run until each
    row's mean w moves by less than ``tol``·C over ``window`` iterations, or ``iterations``. Returns
    the final ``w`` ``(len(lams)·n, C, H, W)``, ``mean_w`` every ``window`` iterations (``mean_w_at``),
    ``stopped_at`` per row and the seconds it took."""
    if len(indices) != len(targets):
        raise ValueError(f"{len(indices)} images but {len(targets)} targets: give one target per image")
    net = network(model, profile, weights)
    device = config.default_device()
    x = data.to_input(data.cifar10("test").x[list(indices)], device)
    n = len(x)
    pm = registry.make("stochastic_pertmap", net, iterations=iterations, samples=samples,
                       lam=[lam for lam in lams for _ in range(n)], C=C, seed=seed, tol=tol, window=window,
                       progress=True)
    start = time.perf_counter()
    w = -pm.attribute(x.repeat(len(lams), 1, 1, 1), target=torch.as_tensor(targets, device=device).repeat(len(lams)))
    return {"w": w.contiguous(), "mean_w": pm.mean_w, "mean_w_at": pm.mean_w_at, "stopped_at": pm.stopped_at,
            "seconds": time.perf_counter() - start}
