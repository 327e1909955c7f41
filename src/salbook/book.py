"""Execute the book's notebooks with papermill, then build the HTML with Jupyter Book.

    python -m salbook.book run   [--profile P] [--out DIR] [--only PATTERN]
    python -m salbook.book build [--root DIR]

``run`` executes every notebook the table of contents lists, in its order: the jupytext source
``notebooks/<path>.md`` is read, given the papermill parameter ``profile``, executed, and written as
``book/notebooks/<path>.ipynb`` (the page ``_toc.yml`` points at). The executed copy is written
atomically, so a failed run never leaves a half-executed page behind. ``build`` runs
``jb build --all -W -n --keep-going`` (warnings are errors) and prints where ``index.html`` is.
"""
from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import config
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


def run(profile: str | None = None, out: Path | None = None, only: str | None = None,
        root: Path = config.PROJECT_ROOT) -> dict[str, float]:
    """Execute the notebooks under ``profile``; return seconds per notebook. Stops at the first failure."""
    import jupytext
    import papermill

    profile = config.resolve_profile(profile)
    out = Path(out) if out else root / EXECUTED
    seconds = {}
    for name in toc_notebooks(root):
        if only and not fnmatch.fnmatch(name, only):
            continue
        source = root / "notebooks" / f"{name}.md"
        if not source.exists():
            raise FileNotFoundError(f"_toc.yml lists {EXECUTED / name} but its source {source} is missing")
        print(f"[{profile}] executing {source.relative_to(root)}", flush=True)
        start = time.perf_counter()
        target = out / f"{name}.ipynb"
        with atomic_path(target) as tmp:
            papermill.execute_notebook(
                jupytext.read(source), str(tmp), parameters={"profile": profile},
                kernel_name="python3", cwd=str(source.parent), progress_bar=False,
            )
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"[{profile}] {name}: {seconds[name]} s", flush=True)
    return seconds


def build(root: Path = config.PROJECT_ROOT, output: Path | None = None) -> Path:
    """``jb build`` the book (warnings are errors) and return the path of ``index.html``."""
    cmd = [str(Path(sys.executable).parent / "jb"), "build", str(root), "--all", "-W", "-n", "--keep-going"]
    if output:
        cmd += ["--path-output", str(output)]
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
    sub.add_parser("build", help="build the HTML book from the executed notebooks")
    args = parser.parse_args(argv)
    if args.command == "run":
        seconds = run(args.profile, args.out, args.only)
        print(f"executed {len(seconds)} notebooks in {sum(seconds.values()):.0f} s")
    else:
        print(f"Book: {build()}")


if __name__ == "__main__":
    main()
