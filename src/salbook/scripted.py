"""Run chapters without Jupyter: each notebook's code cells as one Python script.

    python -m salbook.scripted --profile full [--only 'mpe/*'] [--timings FILE]

For a GPU machine that has PyTorch but no Jupyter stack (a lent accelerator: see
``benchmarks/gpu_book.sh``). The code cells of ``notebooks/<name>.md`` (MyST ``{code-cell}`` blocks)
run in order in one namespace, with ``profile`` set right after the cell tagged ``parameters``, as
papermill injects it; ``myst_nb.glue`` is a no-op, ``display`` prints, figures are closed unsaved.
The run record is the one papermill's run would write, and says how it was made
(``"runner": "script"``). The executed pages must then come from a papermill run; the records are
what this runner is for.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
import time
import types
from pathlib import Path

from . import config, timings, zoo

_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def code_cells(source: str) -> list[tuple[list[str], str]]:
    """``(tags, code)`` of every code cell of a MyST notebook, in order."""
    cells = []
    for body in _CELL.findall(source):
        lines, tags = body.splitlines(), []
        while lines and lines[0].startswith(":"):
            key, _, value = lines.pop(0)[1:].partition(":")
            if key.strip() == "tags":
                tags = [t.strip().strip("'\"") for t in value.strip().strip("[]").split(",") if t.strip()]
        cells.append((tags, "\n".join(lines)))
    return cells


def run_notebook(path: Path, profile: str) -> float:
    """Execute the code cells of the MyST notebook ``path`` under ``profile``; return seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.modules.setdefault("myst_nb", types.SimpleNamespace(glue=lambda *args, **kwargs: None))
    namespace = {"__name__": "__main__", "display": lambda *objs, **kwargs: print(*objs)}
    zoo.forget_loaded()  # the record lists the models of this chapter only
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for tags, code in code_cells(path.read_text()):
            exec(compile(code, str(path), "exec"), namespace)  # noqa: S102 - the book's own notebooks
            if "parameters" in tags:
                namespace["profile"] = profile
            plt.close("all")
    finally:
        os.chdir(cwd)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    from .book import toc_notebooks

    parser = argparse.ArgumentParser(prog="python -m salbook.scripted", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help="smoke, cpu or full (default: full with CUDA, else cpu)")
    parser.add_argument("--only", default=None, help="glob over notebook paths, e.g. 'mpe/*'")
    parser.add_argument("--timings", type=Path, default=None, help="append timed events to this JSON-lines file")
    args = parser.parse_args(argv)
    profile = config.resolve_profile(args.profile)
    if args.timings:
        os.environ["SALBOOK_TIMINGS"] = str(args.timings.resolve())
    os.environ["SALBOOK_RUNNER"] = "script"
    names = [n for n in toc_notebooks() if n != "scorecard" and (not args.only or fnmatch.fnmatch(n, args.only))]
    for name in names:
        os.environ["SALBOOK_NOTEBOOK"] = name
        print(f"[{profile}] {name} (script)", flush=True)
        seconds = run_notebook(config.PROJECT_ROOT / "notebooks" / f"{name}.md", profile)
        timings.log("notebook", name, seconds, profile=profile, runner="script", device=config.device_name())
        print(f"[{profile}] {name}: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
