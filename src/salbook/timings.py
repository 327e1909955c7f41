"""Where the book's wall time goes: an append-only log of timed events.

When the environment variable ``SALBOOK_TIMINGS`` names a file, the library appends one JSON line
per costly event to it:

* ``dataset``: a dataset decoded into the cache (``data``);
* ``model``: a zoo model trained, or loaded from a committed checkpoint (``zoo``);
* ``grid``: a call of ``jobs.run`` that executed at least one job (how many ran, how many came
  from the cache);
* ``notebook``: one notebook executed by ``salbook.book``.

Each line also names the notebook it happened in (``SALBOOK_NOTEBOOK``, set by the book runner for
the kernel it starts), so a model trained inside a chapter is charged to that chapter.
Kernels, job workers and the runner may all write to one file: each event is one ``write`` of
one line to a file opened in append mode, which POSIX keeps whole. Without the variable nothing
is written. ``benchmarks/book_time.py`` turns such a log into the book's timing record.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

KINDS = ("dataset", "model", "grid", "notebook", "build")


def log_path() -> Path | None:
    """The log file, or None when timings are off."""
    path = os.environ.get("SALBOOK_TIMINGS")
    return Path(path) if path else None


def log(kind: str, name: str, seconds: float, **extra) -> None:
    """Append one event (no-op unless ``SALBOOK_TIMINGS`` is set)."""
    if kind not in KINDS:
        raise ValueError(f"unknown timing kind {kind!r}: choose one of {KINDS}")
    path = log_path()
    if path is None:
        return
    event = {"kind": kind, "name": name, "seconds": round(float(seconds), 2),
             "notebook": os.environ.get("SALBOOK_NOTEBOOK"), "end": round(time.time(), 2), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


@contextlib.contextmanager
def timed(kind: str, name: str, **extra) -> Iterator[dict]:
    """Log the wall time of the block; the yielded dict's items are added to the event."""
    start, fields = time.perf_counter(), dict(extra)
    yield fields
    log(kind, name, time.perf_counter() - start, **fields)


def read(path: str | Path) -> list[dict]:
    """The events of a log file (a line cut short by a killed writer is skipped)."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
