"""Benchmark: the whole book from a fresh clone, end to end, with where the time goes.

    python benchmarks/book_time.py [--profile cpu] [--executor processes] [--workdir DIR] [--reuse-venv]

1. clones the committed HEAD of this repository into ``--workdir`` (uncommitted changes are not
   part of the run: the script refuses a dirty tree unless ``--allow-dirty``);
2. creates its environment with ``make env`` (timed, reported as ``install_seconds`` and not part
   of the book's time), or with ``--reuse-venv`` puts the clone's ``src`` in front of this
   checkout's ``.venv`` instead;
3. runs ``python -m salbook.book run`` and ``build`` there with an empty data cache (datasets
   decoded, models trained or loaded from the committed checkpoints, every notebook executed, the
   HTML built), logging every timed event (:mod:`salbook.timings`);
4. writes ``benchmarks/results/book_time-<profile>.json`` here: total wall time, the time per
   model, per notebook and per job grid, with device, commit and profile; and copies the clone's
   run records (``results/<profile>/``) here, the canonical records of that commit.

With ``--workflow`` it is also a dry run of the rest of the cpu path of ``.github/workflows/book.yml``
in the clone, each step timed into the record's ``workflow`` entry: actionlint, the browser check of the
built pages (``tests/sitecheck.py``, screenshots in ``_build/screenshots``) and the publish step's commit
of the executed notebooks to the launch branch (no push; no Pages deploy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from salbook import config, timings  # noqa: E402
from salbook.storage import write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=config.PROFILES)
    parser.add_argument("--executor", default="processes", help="executor of the notebooks (salbook.jobs)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to clone (default: a new temporary folder)")
    parser.add_argument("--reuse-venv", action="store_true", help="use this checkout's .venv instead of `make env`")
    parser.add_argument("--allow-dirty", action="store_true", help="run even if this checkout has uncommitted changes")
    parser.add_argument("--retrain", action="store_true", help="train every model (SALBOOK_RETRAIN=1)")
    parser.add_argument("--no-copy", action="store_true", help="do not copy the run records back into results/")
    parser.add_argument("--from-timings", type=Path, default=None,
                        help="summarise a timings file of chapters run elsewhere (benchmarks/gpu_book.sh) instead")
    parser.add_argument("--commit", default=None, help="with --from-timings: the commit those runs declared")
    parser.add_argument("--workflow", action="store_true",
                        help="also dry-run the workflow's remaining cpu-path steps (actionlint, browser check, publish)")
    args = parser.parse_args()
    if args.from_timings:
        return from_timings(args)

    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty and not args.allow_dirty:
        sys.exit("uncommitted changes: commit them first (the clone runs HEAD), or pass --allow-dirty")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="salbook-book-time-"))
    clone = work / "salbook"
    if clone.exists():
        sys.exit(f"{clone} exists: pass an empty --workdir")
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True).stdout.strip()

    env = dict(os.environ, SALBOOK_DATA=str(clone / "data"), SALBOOK_TIMINGS=str(work / "timings.jsonl"),
               PROFILE=args.profile, SALBOOK_RETRAIN="1" if args.retrain else "0")
    env.pop("SALBOOK_RESULTS", None)
    mirror = config.mirror_dir()
    if mirror is not None:
        env["SALBOOK_MIRROR"] = str(mirror.resolve())
    install = None
    if args.reuse_venv:
        python = ROOT / ".venv" / "bin" / "python"
        env["PYTHONPATH"] = str(clone / "src")
    else:
        start = time.perf_counter()
        subprocess.run(["make", "env"], cwd=clone, env=env, check=True)
        install = round(time.perf_counter() - start, 1)
        python = clone / ".venv" / "bin" / "python"

    start = time.perf_counter()
    subprocess.run([str(python), "-m", "salbook.book", "run", "--profile", args.profile, "--executor", args.executor],
                   cwd=clone, env=env, check=True)
    subprocess.run([str(python), "-m", "salbook.book", "build"], cwd=clone, env=env, check=True)
    total = round(time.perf_counter() - start, 1)

    events = timings.read(work / "timings.jsonl")
    out = ROOT / "benchmarks" / "results" / f"book_time-{args.profile}.json"
    record = summarise(events, total, install, args, commit, python)
    if args.workflow:
        record["workflow"] = workflow_steps(clone, python, env)
    write_json(out, record)
    if not args.no_copy:
        src, dst = clone / "results" / args.profile, ROOT / "results" / args.profile
        shutil.copytree(src, dst, dirs_exist_ok=True)
    print(f"book in {total:.0f} s wall ({args.profile}); install {install} s → {out}")


def workflow_steps(clone: Path, python: Path, env: dict) -> dict:
    """The steps of .github/workflows/book.yml that follow the notebooks' execution and the HTML build,
    run in the clone and timed (the publish step commits locally and does not push)."""
    import yaml

    branch = yaml.safe_load((clone / "_config.yml").read_text())["repository"]["branch"]  # the launch buttons'
    bin_dir = python.parent
    steps = {
        "actionlint": [str(bin_dir / "actionlint"), ".github/workflows/book.yml"],
        "browser check (tests/sitecheck.py)": [str(python), "tests/sitecheck.py", "_build/html",
                                               "--screenshots", "_build/screenshots"],
        "publish: executed notebooks committed to the launch branch (no push)": [
            "bash", "-c", f"git checkout -q -B {branch} && git add -f book/notebooks && "
                          f"git -c user.name=dry-run -c user.email=dry-run@localhost commit -q -m 'Executed notebooks'"
                          f" && git ls-files book/notebooks | grep -c '\\.ipynb$'"],
    }
    out = []
    for name, command in steps.items():
        start = time.perf_counter()
        done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
        out.append({"step": name, "seconds": round(time.perf_counter() - start, 1), "returncode": done.returncode,
                    "output_tail": (done.stdout + done.stderr).strip()[-400:]})
        print(f"{name}: rc {done.returncode} in {out[-1]['seconds']} s")
    return {"what": "a dry run, on this machine, of the cpu path of .github/workflows/book.yml after the build",
            "steps": out}


def from_timings(args) -> None:
    """book_time-<profile>.json from the timings of chapters run as scripts on a lent GPU, one call per
    group: the total is the sum of the chapters' times (the calls' start-up and transfers excluded)."""
    events = timings.read(args.from_timings)
    notebooks = [e for e in events if e["kind"] == "notebook"]
    total = round(sum(e["seconds"] for e in notebooks), 1)
    args.executor, args.retrain = "salbook.scripted, one chapter after another", False
    record = summarise(events, total, None, args, args.commit or "unknown", device=events[0].get("device", "unknown"))
    record["benchmark"] = ("every chapter of the book run as a script (salbook.scripted) on a lent GPU, group by group "
                           "(benchmarks/gpu_book.sh); total: the sum of the chapters' times; no HTML build")
    out = ROOT / "benchmarks" / "results" / f"book_time-{args.profile}.json"
    write_json(out, record)
    print(f"{len(notebooks)} chapters, {total:.0f} s → {out}")


def summarise(events: list[dict], total: float, install: float | None, args, commit: str, python: Path | None = None,
              device: str | None = None) -> dict:
    """The timing record: totals, and the events grouped by kind."""
    by_kind = defaultdict(list)
    for e in events:
        by_kind[e["kind"]].append(e)
    if device is None:
        device = subprocess.run([str(python), "-c", "from salbook import config; print(config.device_name())"],
                                capture_output=True, text=True).stdout.strip()
    return {
        "benchmark": "the whole book from a fresh clone with an empty data cache: datasets decoded, models trained "
                     "or loaded from committed checkpoints, every notebook executed, the HTML built",
        "profile": args.profile,
        "total_seconds": total,
        "install_seconds": install,
        "install": "make env in the clone" if install is not None else "not measured (--reuse-venv)",
        "executor": args.executor,
        "retrain": args.retrain,
        "git_commit": commit,
        "device": device,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "notebooks": {e["name"]: e["seconds"] for e in by_kind["notebook"]},
        "build_seconds": sum(e["seconds"] for e in by_kind["build"]),
        "datasets": {e["name"]: e["seconds"] for e in by_kind["dataset"]},
        "models_trained": [{k: e.get(k) for k in ("name", "seconds", "train_seconds", "test_acc", "notebook")}
                           for e in by_kind["model"] if e.get("trained_now")],
        "models_from_checkpoints": sorted({e["name"] for e in by_kind["model"] if e.get("origin") == "checkpoint"}),
        "grids": [{k: e.get(k) for k in ("name", "fn", "jobs", "ran", "seconds", "notebook", "executor")}
                  for e in by_kind["grid"]],
    }


if __name__ == "__main__":
    main()
