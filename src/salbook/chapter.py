"""The setup every chapter of the book starts with, in one call.

A chapter's first code cell used to repeat the same lines: resolve the profile, pick the profile's
row of its ``SIZES`` table, open its :class:`~salbook.results.RunRecord`, apply the figure style,
find the device and the job executor, seed the random generators. :func:`chapter` does all of it::

    SIZES = {"smoke": dict(images=2), "cpu": dict(images=8), "full": dict(images=64)}
    ch = chapter("decoys/02_fidelity_and_robustness", profile, sizes=SIZES, seed=seed)
    profile, SIZES, record = ch.profile, ch.sizes, ch.record

This module sits at the top of the library's layers (tests/test_architecture.py): it may import
any of them, and no library module imports it.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
import torch

from . import config, jobs, plots
from .results import RunRecord

_NAME = re.compile(r"[A-Za-z0-9_]+/[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Chapter:
    """What a chapter's code needs from its setup (see :func:`chapter`)."""

    name: str  # "<part>/<notebook>", the notebook's path under notebooks/ without suffix
    profile: str  # smoke | cpu | full
    sizes: dict  # the profile's row of the chapter's SIZES table ({} when it has none)
    record: RunRecord  # this run's record, named after the chapter
    device: torch.device
    executor: str  # local | processes | ray, as jobs.resolve_executor decides
    seed: int


def chapter(name: str, profile: str | None = None, *, sizes: dict | None = None, seed: int = 0,
            executor: str | None = None, device: torch.device | str | None = None) -> Chapter:
    """Set up the chapter ``name`` (``"<part>/<notebook>"``) and return its :class:`Chapter`.

    ``profile``: as :func:`salbook.config.resolve_profile` (None: ``$PROFILE``, else full with
    CUDA, else cpu). ``sizes``: the chapter's table ``{profile: {...}}``; ``Chapter.sizes`` is the
    resolved profile's entry, and a table without that profile, or with a key that is no profile,
    is refused. ``seed`` seeds Python's, NumPy's global and torch's default generators, so that
    any draw a chapter makes without its own generator repeats from run to run. ``executor`` as
    :func:`salbook.jobs.resolve_executor`; ``device`` defaults to :func:`salbook.config.default_device`.
    The book's figure style (:func:`salbook.plots.set_style`) is applied.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"chapter name must be '<part>/<notebook>' (the path under notebooks/ "
                         f"without .md), got {name!r}")
    profile = config.resolve_profile(profile)
    row = _profile_sizes(name, profile, sizes)
    device = torch.device(device) if device is not None else config.default_device()
    executor = jobs.resolve_executor(executor)
    _seed_everything(seed)
    plots.set_style()
    return Chapter(name=name, profile=profile, sizes=row, record=RunRecord(name, profile, device),
                   device=device, executor=executor, seed=seed)


def _profile_sizes(name: str, profile: str, sizes: dict | None) -> dict:
    """``sizes[profile]``, with an error naming the chapter and the profile when it is missing."""
    if sizes is None:
        return {}
    unknown = sorted(map(repr, set(sizes) - set(config.PROFILES)))
    if unknown:
        raise ValueError(f"{name}: SIZES has keys {', '.join(unknown)} that are no profile "
                         f"(profiles: {', '.join(config.PROFILES)})")
    if profile not in sizes:
        raise KeyError(f"{name}: SIZES has no entry for the {profile!r} profile "
                       f"(it has {', '.join(map(repr, sizes)) or 'none'})")
    return sizes[profile]


def _seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch's default generators."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))
