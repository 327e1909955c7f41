"""Where things live and which profile runs.

Every path the library writes to is derived here, so that one environment variable moves it:

``SALBOOK_DATA``     the gitignored cache (decoded datasets, trained models, job results);
                     default ``<project>/data``.
``SALBOOK_MIRROR``   an offline dataset mirror (files and checksums as in ``data.MIRROR_FILES``);
                     default ``<project>/../shared/datasets`` when that folder exists.
``SALBOOK_CHECKPOINTS``  committed checkpoints of the zoo (``<project>/checkpoints``).
``SALBOOK_RESULTS``  where run records go; default ``<project>/results`` for the ``cpu`` and
                     ``full`` profiles and ``<data>/results`` for ``smoke`` (never committed).
``SALBOOK_WORKERS``  worker processes of the ``processes`` job executor; default: the cores.
``PROFILE``          ``smoke``, ``cpu`` or ``full``; default ``full`` with CUDA, else ``cpu``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

PROFILES = ("smoke", "cpu", "full")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The gitignored cache folder."""
    return Path(os.environ.get("SALBOOK_DATA", PROJECT_ROOT / "data"))


def checkpoint_dir() -> Path:
    """The committed model checkpoints (``checkpoints/<profile>/<name>.pt`` and its card)."""
    return Path(os.environ.get("SALBOOK_CHECKPOINTS", PROJECT_ROOT / "checkpoints"))


def mirror_dir() -> Path | None:
    """The offline dataset mirror, or None when neither the variable nor the default exists."""
    if "SALBOOK_MIRROR" in os.environ:
        return Path(os.environ["SALBOOK_MIRROR"])
    default = PROJECT_ROOT.parent / "shared" / "datasets"
    return default if default.is_dir() else None


def results_dir(profile: str) -> Path:
    """Folder for the run records of ``profile``: committed for cpu/full, a cache for smoke."""
    if "SALBOOK_RESULTS" in os.environ:
        return Path(os.environ["SALBOOK_RESULTS"]) / profile
    if profile == "smoke":
        return data_dir() / "results" / profile
    return PROJECT_ROOT / "results" / profile


def resolve_profile(profile: str | None = None) -> str:
    """Return the profile to run: the argument, else ``$PROFILE``, else full (CUDA) or cpu."""
    profile = profile or os.environ.get("PROFILE") or ("full" if torch.cuda.is_available() else "cpu")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return profile


def workers() -> int:
    """Worker processes of the ``processes`` executor: ``SALBOOK_WORKERS``, else the number of cores."""
    value = os.environ.get("SALBOOK_WORKERS") or str(os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"SALBOOK_WORKERS must be a positive integer, got {value!r}")
    return int(value)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device | str | None = None) -> str:
    """A human-readable name of the device, for run records."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
