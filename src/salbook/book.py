"""Execute the book's notebooks with papermill, then build the HTML with Jupyter Book.

    python -m salbook.book run   [--profile P] [--out DIR] [--only PATTERN] [--executor local|processes|ray]
                                 [--timings FILE]
    python -m salbook.book build [--timings FILE]
    python -m salbook.book vendor

``run`` executes every notebook the table of contents lists, in its order: the jupytext source
``notebooks/<path>.md`` is read, given the papermill parameter ``profile``, executed, and written as
``book/notebooks/<path>.ipynb`` (the page ``_toc.yml`` points at). The executed copy is written
atomically, so a failed run never leaves a half-executed page behind. ``build`` runs
``jb build --all -W -n --keep-going`` (warnings are errors) and prints where ``index.html`` is.
``vendor`` (also the first step of ``build``) makes the pages work with no network: ``npm ci``
installs the browser assets pinned by ``package-lock.json`` (MathJax 3, require.js, the Jupyter
widget manager) into ``node_modules/``, and the files the pages load are copied into ``_vendor/vendor/``,
which ``_config.yml`` lists in ``html_static_path`` (served as ``_static/vendor/``) and names in
``mathjax_path`` and ``nb_ipywidgets_js``. ``_vendor/`` is not ``_static/``: Jupyter Book 1 adds
every ``.js``/``.css`` under a book's ``_static/`` folder to every page.
``--timings FILE`` appends the timed events of the run (datasets, models, job grids, notebooks,
the build: :mod:`salbook.timings`) to ``FILE``; ``benchmarks/book_time.py`` summarises them.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import re
import shutil
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


def claim_sections(notebook: str, claim_ids, root: Path = config.PROJECT_ROOT) -> dict[str, tuple[str, str]]:
    """Where each claim is decided: ``{claim id: (section title, HTML anchor)}`` for the claims whose id
    appears quoted in a code cell of ``notebooks/<notebook>.md``, from the last heading above it (the
    anchor Sphinx gives that section; ``""`` for the page's title). An id built at run time is found by
    the constant start of the f-string that builds it (``f"own-wins-{y}"`` decides ``own-wins-fidelity``),
    when that start is at least three characters long; other ids are left out."""
    from docutils.nodes import make_id

    text = (root / "notebooks" / f"{notebook}.md").read_text()
    sections, heading, in_code = [], ("", ""), False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = line.startswith("```{code-cell}") and not in_code
            continue
        if not in_code and line.startswith("#"):
            level, title = len(line) - len(line.lstrip("#")), line.lstrip("#").strip()
            plain = re.sub(r"\{[^}]*\}`([^`]*)`", r"\1", title).replace("`", "").replace("*", "")
            heading = (plain, "" if level == 1 else make_id(plain))
        sections.append((line, heading, in_code))
    built = [(m.group(1), heading) for line, heading, code in sections if code
             for m in re.finditer(r"""f["']([^"'{}]{3,})\{""", line)]
    found = {}
    for claim in claim_ids:
        quoted = (f'"{claim}"', f"'{claim}'")
        for line, heading, code in sections:
            if code and any(q in line for q in quoted):
                found[claim] = heading
                break
        else:
            match = next((heading for prefix, heading in built if claim.startswith(prefix)), None)
            if match is not None:
                found[claim] = match
    return found


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


VENDOR = Path("_vendor")  # html_static_path entry of _config.yml; its vendor/ folder is served as _static/vendor/
# (package, file or folder inside it) -> path under _vendor/vendor/
VENDOR_FILES = {
    ("requirejs", "require.js"): "require.js",
    ("@jupyter-widgets/html-manager", "dist/embed-amd.js"): "embed-amd.js",
    ("mathjax", "es5/tex-chtml.js"): "mathjax/tex-chtml.js",
    ("mathjax", "es5/input/tex/extensions"): "mathjax/input/tex/extensions",  # loaded on demand (autoload)
    ("mathjax", "es5/output/chtml/fonts/woff-v2"): "mathjax/output/chtml/fonts/woff-v2",
    ("mathjax", "es5/ui"): "mathjax/ui",  # the menu's lazily loaded parts
    ("mathjax", "es5/a11y"): "mathjax/a11y",
}
# The widget manager's icon fonts (Font Awesome, named by content hash): webpack resolves them against the
# URL require.js gives the module that loads first, which widgets-config.js points into jupyter-widgets/:
# "@jupyter-widgets/html-manager" (fonts in jupyter-widgets/) or ".../html-manager/dist/libembed-amd"
# (fonts in jupyter-widgets/html-manager/dist/). Both get a copy (about 2 MB).
WIDGET_FONTS = ("@jupyter-widgets/html-manager", "dist")
WIDGETS_CONFIG = """// Written by salbook.book.vendor. Loaded after require.js and before embed-amd.js.
(function () {
  // The widget manager's modules (@jupyter-widgets/*) resolve to this folder, so the icon fonts it asks
  // for by relative URL come from the site, not from the page's folder or a CDN.
  var src = document.currentScript.src;
  var here = src.slice(0, src.lastIndexOf("/") + 1);
  require.config({paths: {"@jupyter-widgets": here + "jupyter-widgets"}});
  // The widget controls typeset their labels with MathJax 2's MathJax.Hub.Queue; the book loads
  // MathJax 3, which has no Hub: give it one that typesets the element with MathJax 3.
  function hub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) { return; }
    mj.Hub = {Queue: function () {
      Array.prototype.forEach.call(arguments, function (job) {
        if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
          mj.startup.promise.then(function () { return mj.typesetPromise([job[2]]); })
            .catch(function (e) { console.warn("MathJax in a widget:", e); });
        }
      });
    }};
  }
  document.addEventListener("DOMContentLoaded", hub);  // after the deferred MathJax script, before the widgets render
  hub();
})();
"""


def vendor(root: Path = config.PROJECT_ROOT, project: Path = config.PROJECT_ROOT) -> Path:
    """Install the browser assets pinned by ``project``'s ``package-lock.json`` (``npm ci``, skipped when
    ``node_modules/`` already holds that lockfile's install) and copy the files the pages load into
    ``root/_vendor/vendor/``; return that folder."""
    lock = project / "package-lock.json"
    stamp = project / "node_modules" / ".salbook-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        npm = shutil.which("npm")
        if npm is None:
            raise FileNotFoundError("npm is missing: the book serves MathJax and the widget manager itself, installed "
                                    "from the npm registry by `npm ci` (package-lock.json); install Node.js 18+ with npm")
        with timings.timed("build", "npm ci"):
            subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=project, check=True)
        stamp.write_text(digest)
    out = root / VENDOR / "vendor"
    if out.exists():
        shutil.rmtree(out)
    for (package, inside), target in VENDOR_FILES.items():
        src, dst = project / "node_modules" / package / inside, out / target
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    for fonts in (out / "jupyter-widgets", out / "jupyter-widgets" / "html-manager" / "dist"):
        fonts.mkdir(parents=True, exist_ok=True)
        for font in (project / "node_modules" / WIDGET_FONTS[0] / WIDGET_FONTS[1]).iterdir():
            if font.suffix in {".woff2", ".woff", ".eot", ".ttf", ".svg"}:
                shutil.copy2(font, fonts / font.name)
    (out / "widgets-config.js").write_text(WIDGETS_CONFIG)
    return out


def build(root: Path = config.PROJECT_ROOT, output: Path | None = None) -> Path:
    """Vendor the browser assets (:func:`vendor`), ``jb build`` the book (warnings are errors) and return the
    path of ``index.html``."""
    if (root / "_static").is_dir():
        raise RuntimeError(f"{root / '_static'} exists: Jupyter Book 1 would then add every .js/.css of every "
                           f"html_static_path entry, MathJax and the widget manager included, to every page")
    vendor(root)
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
    p_vendor = sub.add_parser("vendor", help="install (npm ci) and copy the pages' browser assets into _vendor/")
    for p in (p_run, p_build, p_vendor):
        p.add_argument("--timings", type=Path, default=None, help="append timed events to this JSON-lines file")
    args = parser.parse_args(argv)
    if args.timings:
        os.environ["SALBOOK_TIMINGS"] = str(args.timings.resolve())
    if args.command == "run":
        seconds = run(args.profile, args.out, args.only, executor=args.executor or None)
        print(f"executed {len(seconds)} notebooks in {sum(seconds.values()):.0f} s")
    elif args.command == "vendor":
        print(f"Browser assets: {vendor()}")
    else:
        print(f"Book: {build()}")


if __name__ == "__main__":
    main()
