"""Benchmark: one small CPU grid under the ``local`` executor and under ``ray`` with 2 workers.

Both run the same jobs (``salbook.jobs.reference_workload``, one CPU each) from an empty cache, so
each computes every job; the ray run includes starting and stopping a local Ray instance. Reports
wall times and their ratio local / ray (> 1: Ray is faster). Writes
benchmarks/results/jobs_executors.json.

    python benchmarks/jobs_executors.py [--jobs 16] [--size 512] [--rounds 40]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from salbook import config, jobs
from salbook.results import git_commit
from salbook.storage import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    import ray

    grid = [jobs.Job(jobs.reference_workload, {"seed": s, "size": args.size, "rounds": args.rounds}) for s in range(args.jobs)]
    timings = {}
    for executor in ("local", "ray"):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["SALBOOK_DATA"] = cache
            start = time.perf_counter()
            if executor == "ray":
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            out = jobs.run(grid, executor, progress=False)
            if executor == "ray":
                ray.shutdown()
            timings[executor] = time.perf_counter() - start
            out.raise_failures()
            print(f"{executor}: {timings[executor]:.1f} s")
    result = {
        "benchmark": f"{args.jobs} jobs of reference_workload(size={args.size}, rounds={args.rounds}), one CPU each",
        "local_seconds": round(timings["local"], 2), "ray_2_workers_seconds": round(timings["ray"], 2),
        "ratio_local_over_ray": round(timings["local"] / timings["ray"], 2),
        "note": "local runs jobs one after another with torch's default threads; Ray runs 2 single-CPU workers "
                "(it sets OMP_NUM_THREADS to the job's num_cpus) and its time includes ray.init and shutdown",
        "device": config.device_name(), "torch": torch.__version__, "ray": ray.__version__, "git_commit": git_commit(),
    }
    write_json(Path(__file__).parent / "results" / "jobs_executors.json", result)
    print(result)


if __name__ == "__main__":
    main()
