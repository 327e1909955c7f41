"""The PertMap benchmark grid: the maps of one method for one batch of CIFAR-10 test images, as a job
of :mod:`salbook.jobs`. The benchmark notebook splits its images into batches and runs every
(method, batch) pair, here or on a Ray cluster; a killed run resumes with the batches not yet done.
"""
from __future__ import annotations

import time

import torch

from .. import config, data, zoo
from ..methods import baselines
from ..methods.pertmap import LPPertMap, StochasticPertMap

PERTMAP = {"stochastic_pertmap": StochasticPertMap, "lp_pertmap": LPPertMap}


def explainer(method: str, model: torch.nn.Module, options: dict | None = None):
    """A PertMap variant (``"stochastic_pertmap"``, ``"lp_pertmap"``) or a :mod:`~salbook.methods.baselines` method."""
    if method in PERTMAP:
        return PERTMAP[method](model, progress=False, **(options or {}))
    return baselines.make(method, model, **(options or {}))


def method_maps(model: str, profile: str, method: str, options: dict | None, indices: list[int],
                targets: list[int]) -> dict:
    """Raw maps of ``method`` for the CIFAR-10 test images ``indices`` and classes ``targets``, the
    seconds they took, and for LP PertMap its boxes (``upper``, ``lower``) and slacks."""
    if len(indices) != len(targets):
        raise ValueError(f"{len(indices)} images but {len(targets)} targets: give one target per image")
    net = zoo.get(model, profile).model
    device = config.default_device()
    x = data.to_input(data.cifar10("test").x[list(indices)], device)
    e = explainer(method, net, options)
    start = time.perf_counter()
    maps = e.attribute(x, target=torch.as_tensor(targets, device=device))
    result = {"maps": maps.detach().cpu(), "seconds": time.perf_counter() - start}
    for name in ("upper", "lower", "slack"):
        if getattr(e, name, None) is not None:
            result[name] = getattr(e, name)
    return result
