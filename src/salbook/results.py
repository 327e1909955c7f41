"""Run records: every executed notebook leaves one JSON file with its numbers and its provenance.

``results/<profile>/<notebook>.json`` (``notebook`` is the path under ``notebooks/`` without suffix,
e.g. ``mpe/01_mnist_mpe``) holds::

    {
      "notebook":    "mpe/01_mnist_mpe",
      "profile":     "cpu",                       # smoke | cpu | full
      "device":      "cpu (2 cores, 2 torch threads)",
      "git_commit":  "3f2c1e0…",                  # "+dirty" when tracked files differed from it
      "torch":       "2.14.1",
      "data_source": ["MNIST original release (…)"],
      "seconds":     412.7,                       # wall time from RunRecord() to save()
      "models":      [{"name": "mnist-cnn2", "origin": "checkpoint", ...}],  # zoo models used (zoo.loaded)
      "metrics":     {...},                       # free-form numbers of this notebook
      "claims": [                                 # the papers' claims, each judged by a rule
        {"id": "test-accuracy", "paper": "99.22 %", "paper_value": 0.9922, "ours": 0.9905,
         "verdict": "reproduced", "rule": "contains: …", "evidence": "0.9905 [0.988, 0.992] (…)", "note": "…"}
      ],
      "checks": [                                 # facts the code guarantees or a sanity check; not verdicts
        {"id": "decoys-valid", "statement": "…", "passed": true, "detail": "…"}
      ],
      "substitutions": [                          # where our setting differs from the paper's: no verdict
        {"id": "resnet-accuracy", "paper": "ResNet-50 93 %", "ours": "ResNet-8 78 %", "note": "…"}
      ]
    }

``verdict`` is one of :data:`VERDICTS`, decided by a rule of :mod:`salbook.verdicts`. The book's tables
and its scorecard read only these files.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from . import config
from .storage import write_json
from .verdicts import VERDICTS, Verdict


class RunRecord:
    """Collects one notebook run's metrics and claims, then writes them with provenance."""

    def __init__(self, notebook: str, profile: str, device=None):
        self.notebook = notebook
        self.profile = config.resolve_profile(profile)
        self.device = config.device_name(device)
        self.data_sources: list[str] = []
        self.metrics: dict = {}
        self.claims: list[dict] = []
        self.checks: list[dict] = []
        self.substitutions: list[dict] = []
        self._start = time.perf_counter()

    def uses(self, source: str) -> None:
        """Note a data source (``data.Split.source``) used by this run."""
        if source not in self.data_sources:
            self.data_sources.append(source)

    def claim(self, id: str, paper: str, paper_value, ours, verdict: Verdict, note: str = "") -> None:
        """Record the paper's claim ``paper`` (its number ``paper_value``) beside ``ours``, judged by
        ``verdict`` (a :class:`~salbook.verdicts.Verdict` from one of the rules in
        :mod:`salbook.verdicts`; a bare string is refused, so every verdict names its rule)."""
        if not isinstance(verdict, Verdict):
            raise TypeError(f"claim {id!r}: verdict must come from a rule of salbook.verdicts "
                            f"(e.g. verdicts.exceeds(...)), got {type(verdict).__name__} {verdict!r}")
        _refuse_nan(id, ours)
        self._new_id(id)
        self.claims.append(_plain({"id": id, "paper": paper, "paper_value": paper_value, "ours": ours,
                                   "verdict": verdict.verdict, "rule": verdict.rule, "evidence": verdict.evidence,
                                   "note": note}))

    def check(self, id: str, statement: str, passed: bool, detail: str = "") -> bool:
        """Record a check: a fact that holds by construction or a sanity check of our own code and data
        (e.g. "every decoy satisfies the constraint", "the baseline solves its own problem"). Checks
        are shown in their chapter, not counted in the scorecard. Returns ``passed``."""
        self._new_id(id)
        self.checks.append(_plain({"id": id, "statement": statement, "passed": bool(passed), "detail": detail}))
        return bool(passed)

    def substitution(self, id: str, paper: str, ours, note: str = "") -> None:
        """Record a number of the paper beside ours where the two measure different things (another
        network, another image size): shown side by side, never judged."""
        _refuse_nan(id, ours)
        self._new_id(id)
        self.substitutions.append(_plain({"id": id, "paper": paper, "ours": ours, "note": note}))

    def checks_table(self):
        """The checks recorded so far, as a table a chapter displays (id, statement, passed, detail)."""
        import pandas as pd

        return pd.DataFrame(self.checks, columns=["id", "statement", "passed", "detail"]).set_index("id")

    def _new_id(self, id: str) -> None:
        if any(e["id"] == id for e in (*self.claims, *self.checks, *self.substitutions)):
            raise ValueError(f"claim id {id!r} recorded twice")

    def path(self) -> Path:
        return config.results_dir(self.profile) / f"{self.notebook}.json"

    def as_dict(self) -> dict:
        from . import zoo  # zoo imports this module

        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "device": self.device,
            "git_commit": git_commit(),
            "torch": torch.__version__,
            "data_source": self.data_sources,
            "seconds": round(time.perf_counter() - self._start, 1),
            "runner": os.environ.get("SALBOOK_RUNNER", "jupyter"),  # "script": salbook.scripted, no figures kept
            "models": zoo.loaded(),
            "metrics": _plain(self.metrics),
            "claims": self.claims,
            "checks": self.checks,
            "substitutions": self.substitutions,
        }

    def save(self) -> Path:
        """Write the record atomically and return its path."""
        write_json(self.path(), self.as_dict())
        return self.path()


def load(profile: str, root: Path | None = None) -> list[dict]:
    """All run records of ``profile``, sorted by notebook (other JSON there, e.g. model cards, is skipped)."""
    root = root or config.results_dir(profile)
    records = (read_record(p) for p in root.rglob("*.json"))
    return sorted((r for r in records if "notebook" in r), key=lambda r: r["notebook"])


def read_record(path: Path) -> dict:
    """One run record; a file that is not valid JSON is an error that names it and says what to do."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"run record {path} is not valid JSON ({err}): rerun its notebook "
                         "(`python -m salbook.book run --only <part>/<notebook>`) or restore it with "
                         f"`git checkout -- {path}`") from None


def load_record(notebook: str, profile: str) -> dict | None:
    """The run record of ``notebook`` (e.g. ``"pertmap/02_grayflip_benchmark"``) under ``profile``, or None."""
    path = config.results_dir(profile) / f"{notebook}.json"
    return read_record(path) if path.exists() else None


SOURCE_FOLDERS = ("src", "notebooks", "benchmarks")  # where an untracked file can change a run's numbers


def git_commit() -> str:
    """HEAD of the project's repository, with ``+dirty`` if tracked files (outside results/) changed
    or if ``src/``, ``notebooks/`` or ``benchmarks/`` hold files git does not know (a new module the
    run imported is part of the code that made the numbers, but not of the commit).

    A copy of the tree whose ``.git`` is missing or stale (a remote GPU, a container) names its
    commit in the environment variable ``SALBOOK_GIT_COMMIT``, which then wins; it is recorded with
    the suffix ``(declared)``.
    """
    declared = os.environ.get("SALBOOK_GIT_COMMIT")
    if declared:
        return f"{declared} (declared)"

    def git(*args):
        return subprocess.run(["git", *args], cwd=config.PROJECT_ROOT, capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results").stdout.strip()
    untracked = git("ls-files", "--others", "--exclude-standard", "--", *SOURCE_FOLDERS).stdout.strip()
    return head.stdout.strip() + ("+dirty" if changed or untracked else "")


def _refuse_nan(id: str, value) -> None:
    flat = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
    for v in flat:
        if isinstance(v, (dict, list, tuple)):
            _refuse_nan(id, v)
        elif isinstance(v, (float, np.floating)) and not np.isfinite(v):
            raise ValueError(f"claim {id!r}: our value is NaN or infinite; a failed measurement must be fixed "
                             "(or recorded as a metric), not judged")


def _plain(obj):
    """Numpy / torch scalars and arrays → plain Python for JSON."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
