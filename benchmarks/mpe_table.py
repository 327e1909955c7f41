"""Benchmark: building the MPE table over a whole training set vs one inference pass over it.

The MPE paper states MCMPE costs O(|D|·n·c): one forward pass plus bookkeeping. We measure the ratio
  time(mpe_table over D) / time(softmax forward pass over D)
side by side, alternating the two, and report the median of ``--repeats`` pairs. Goal: ≤ 1.5. The
forward pass is the one the table makes (same batches, channels-last input), so the ratio is the
cost of the bookkeeping alone.

    python benchmarks/mpe_table.py [--dataset mnist|cifar10|all] [--profile cpu] [--repeats 3]

MNIST uses the zoo's 2-layer CNN (n = 784), CIFAR-10 its 4-layer CNN (n = 3072; the cheapest CIFAR
network, so the hardest case for the ratio). Writes benchmarks/results/mpe_table-<dataset>-<profile>.json.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from salbook import config, data, zoo
from salbook.methods import mpe_table
from salbook.methods.mpe import _channels_last_input
from salbook.results import git_commit
from salbook.storage import write_json

MODELS = {"mnist": "mnist-cnn2", "cifar10": "cifar-cnn4"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="all", choices=["mnist", "cifar10", "all"])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    profile = config.resolve_profile(args.profile)
    for dataset in MODELS if args.dataset == "all" else [args.dataset]:
        benchmark(dataset, profile, args.repeats, args.batch_size)


def benchmark(dataset: str, profile: str, repeats: int, batch_size: int) -> None:
    model = zoo.get(MODELS[dataset], profile).model
    train = data.load(dataset, "train")
    pairs = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward_pass(model, train.x, batch_size)
        inference = time.perf_counter() - start
        start = time.perf_counter()
        mpe_table(model, train.x, batch_size=batch_size, progress=False)
        table = time.perf_counter() - start
        pairs.append((inference, table))
        print(f"{dataset}: inference {inference:.2f} s, MPE table {table:.2f} s, ratio {table / inference:.3f}")
    ratio = statistics.median(t / i for i, t in pairs)
    out = Path(__file__).parent / "results" / f"mpe_table-{dataset}-{profile}.json"
    write_json(out, {
        "benchmark": f"mpe_table / inference pass, {dataset} training set ({len(train)} images), {MODELS[dataset]}",
        "ratio_median": round(ratio, 3), "goal": 1.5,
        "pairs_seconds": [{"inference": round(i, 3), "mpe_table": round(t, 3)} for i, t in pairs],
        "profile": profile, "device": config.device_name(), "torch": torch.__version__,
        "git_commit": git_commit(), "data_source": train.source, "batch_size": batch_size,
    })
    print(f"{dataset}: median ratio {ratio:.3f} (goal ≤ 1.5) → {out}")


@torch.inference_mode()
def forward_pass(model: torch.nn.Module, x, batch_size: int) -> None:
    """The softmax forward pass of ``mpe_table`` alone."""
    device = next(model.parameters()).device
    for start in range(0, len(x), batch_size):
        F.softmax(model(_channels_last_input(x[start:start + batch_size], device)), dim=1).double().cpu()


if __name__ == "__main__":
    main()
