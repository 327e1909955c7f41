"""Execute the book's notebooks with papermill, then build the HTML with Jupyter Book.

    python -m salbook.book run   [--profile P] [--out DIR] [--only PATTERN] [--executor local|processes|ray]
                                 [--timings FILE]
    python -m salbook.book build [--timings FILE]

``run`` executes every notebook the table of contents lists, in its order: the jupytext source
``notebooks/<path>.md`` is read, given the papermill parameter ``profile``, executed, and written as
``book/notebooks/<path>.ipynb`` (the page ``_toc.yml`` points at). The executed copy is written
atomically, so a failed run never leaves a half-executed page behind. ``build`` runs
``jb build --all -W -n --keep-going`` (warnings are errors) and prints where ``index.html`` is.
``--timings FILE`` appends the timed events of the run (datasets, models, job grids, notebooks,
the build: :mod:`salbook.timings`) to ``FILE``; ``benchmarks/book_time.py`` summarises them.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from . import config, jobs, results, timings
from .storage import atomic_path

EXECUTED = Path("book/notebooks")  # where the table of contents expects executed notebooks


def toc_notebooks(root: Path = config.PROJECT_ROOT) -> list[str]:
    """Notebook paths (relative to ``notebooks/``, no suffix) in table-of-contents order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            file = node.get("file")
            if file and Path(file).parts[:2] == EXECUTED.parts:
                found.append(str(Path(*Path(file).parts[2:])))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return found


SUMMARIES = ("scorecard",)  # notebooks that read the others' run records: executed after them


def run(profile: str | None = None, out: Path | None = None, only: str | None = None,
        root: Path = config.PROJECT_ROOT, executor: str | None = None) -> dict[str, float]:
    """Execute the notebooks under ``profile``; return seconds per notebook.

    Each notebook is one job of :mod:`salbook.jobs` (never cached: a run always re-executes). With
    the ``local`` executor they run one after another here; with ``processes`` in parallel on this
    machine (one torch thread each, ``SALBOOK_WORKERS`` at a time, longest first by the last run
    record); with ``ray`` in parallel on a cluster, one GPU each under the ``full`` profile. The
    summaries run after the chapters. A failing notebook is reported with its name once the others
    have finished.
    """
    profile = config.resolve_profile(profile)
    executor = chapter_executor(executor)
    out = Path(out) if out else root / EXECUTED
    names = [n for n in toc_notebooks(root) if not only or fnmatch.fnmatch(n, only)]
    for name in names:
        if not (root / "notebooks" / f"{name}.md").exists():
            raise FileNotFoundError(f"_toc.yml lists {EXECUTED / name} but its source notebooks/{name}.md is missing")
    resources = {"num_cpus": 1, "num_gpus": 1} if profile == "full" else {"num_cpus": 1}
    from salbook.book import execute  # by its importable name, also under ``python -m salbook.book``

    seconds = {}
    chapters = sorted((n for n in names if n not in SUMMARIES), key=lambda n: -expected_seconds(n, profile))
    for stage in (chapters, [n for n in names if n in SUMMARIES]):
        grid = [jobs.Job(execute, {"name": n, "profile": profile, "out": str(out), "root": str(root)}, resources)
                for n in stage]
        done = jobs.run(grid, executor, progress=False, cache=False)
        seconds.update({n: r for n, r in zip(stage, done.results) if r is not None})
        done.raise_failures()
    return seconds


def chapter_executor(executor: str | None = None) -> str:
    """The executor of the chapters: the one asked for (argument, ``SALBOOK_EXECUTOR``, ``RAY_ADDRESS``:
    :func:`salbook.jobs.resolve_executor`), else ``processes`` on a machine without a GPU (chapters in
    parallel, one core each) and ``local`` with one (one chapter at a time on the GPU)."""
    if executor or os.environ.get("SALBOOK_EXECUTOR") or os.environ.get("RAY_ADDRESS"):
        return jobs.resolve_executor(executor)
    return "local" if torch.cuda.is_available() else "processes"


def expected_seconds(name: str, profile: str) -> float:
    """How long ``name`` took in its last run record of ``profile`` (0 when there is none)."""
    record = results.load_record(name, profile)
    return float(record["seconds"]) if record else 0.0


def execute(name: str, profile: str, out: str, root: str) -> float:
    """Execute ``notebooks/<name>.md`` with papermill into ``<out>/<name>.ipynb`` (atomically); return seconds."""
    import jupytext
    import papermill

    source = Path(root) / "notebooks" / f"{name}.md"
    print(f"[{profile}] executing notebooks/{name}.md", flush=True)
    start = time.perf_counter()
    os.environ["SALBOOK_NOTEBOOK"] = name  # the kernel inherits it: its timing events name this notebook
    try:
        with atomic_path(Path(out) / f"{name}.ipynb") as tmp:
            papermill.execute_notebook(jupytext.read(source), str(tmp), parameters={"profile": profile},
                                       kernel_name="python3", cwd=str(source.parent), progress_bar=False)
    finally:
        os.environ.pop("SALBOOK_NOTEBOOK", None)
    seconds = round(time.perf_counter() - start, 1)
    timings.log("notebook", name, seconds, profile=profile)
    print(f"[{profile}] {name}: {seconds} s", flush=True)
    return seconds


def build(root: Path = config.PROJECT_ROOT, output: Path | None = None) -> Path:
    """``jb build`` the book (warnings are errors) and return the path of ``index.html``."""
    cmd = [str(Path(sys.executable).parent / "jb"), "build", str(root), "--all", "-W", "-n", "--keep-going"]
    if output:
        cmd += ["--path-output", str(output)]
    with timings.timed("build", "jb build"):
        subprocess.run(cmd, check=True)
    index = (output or root) / "_build" / "html" / "index.html"
    if not index.exists():
        raise FileNotFoundError(f"jb build finished but {index} is missing")
    return index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m salbook.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebooks with papermill")
    p_run.add_argument("--profile", default=None, help="smoke, cpu or full (default: $PROFILE, else full with CUDA, else cpu)")
    p_run.add_argument("--out", type=Path, default=None, help=f"folder for executed notebooks (default {EXECUTED})")
    p_run.add_argument("--only", default=None, help="glob over notebook paths, e.g. 'mpe/*'")
    p_run.add_argument("--executor", default=None, choices=[*jobs.EXECUTORS, ""],
                       help="local: one after another; processes: in parallel on this machine, one core each "
                            "(default without a GPU); ray: on a cluster (default when RAY_ADDRESS is set)")
    p_build = sub.add_parser("build", help="build the HTML book from the executed notebooks")
    for p in (p_run, p_build):
        p.add_argument("--timings", type=Path, default=None, help="append timed events to this JSON-lines file")
    args = parser.parse_args(argv)
    if args.timings:
        os.environ["SALBOOK_TIMINGS"] = str(args.timings.resolve())
    if args.command == "run":
        seconds = run(args.profile, args.out, args.only, executor=args.executor or None)
        print(f"executed {len(seconds)} notebooks in {sum(seconds.values()):.0f} s")
    else:
        print(f"Book: {build()}")


if __name__ == "__main__":
    main()
