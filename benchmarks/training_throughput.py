"""Benchmark: training throughput of the zoo's networks on this machine, the settings side by side.

    python benchmarks/training_throughput.py [--steps 10] [--batch 128]

For each network: images per second of a training step (forward, backward, SGD step) in the
default and in the channels-last memory layout, with all torch threads and with one, and two
single-threaded processes at once (what the ``processes`` executor does with two chapters or two
retrainings), and channels-last under ``torch.compile`` (its compile time reported apart: a
chapter would pay it once per process). It is the evidence for three choices: ``zoo.fit`` trains
channels-last, it does not compile, and the book runs chapters in parallel single-threaded lanes on
a CPU. Writes
``benchmarks/results/training_throughput-<device>.json``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from salbook import config, nets
from salbook.results import git_commit
from salbook.storage import write_json

ARCHITECTURES = ("mnist_lenet", "mnist_cnn2", "cifar_cnn4", "cifar_resnet8")


def throughput(architecture: str, batch: int, steps: int, channels_last: bool, threads: int,
               compiled: bool = False) -> float | tuple[float, float]:
    """Training images per second of ``architecture`` (after two warm-up steps); with ``compiled``,
    also the seconds of the two warm-up steps, where ``torch.compile`` compiles."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nets.build(architecture).train()
    warmup = time.perf_counter()
    shape = (1, 28, 28) if architecture.startswith("mnist") else (3, 32, 32)
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward = torch.compile(model) if compiled else model
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    rate = batch * steps / (time.perf_counter() - start)
    return (rate, start - warmup) if compiled else rate


def _worker(args):
    return throughput(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    cores = torch.get_num_threads()
    rows = []
    for arch in ARCHITECTURES:
        row = {"architecture": arch}
        for layout, cl in (("default", False), ("channels_last", True)):
            row[f"{layout}, {cores} threads"] = throughput(arch, args.batch, args.steps, cl, cores)
            row[f"{layout}, 1 thread"] = throughput(arch, args.batch, args.steps, cl, 1)
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            pair = pool.map(_worker, [(arch, args.batch, args.steps, True, 1)] * 2)
        row["channels_last, 2 processes × 1 thread (sum)"] = sum(pair)
        try:
            rate, compile_seconds = throughput(arch, args.batch, args.steps, True, cores, compiled=True)
            row[f"channels_last + torch.compile, {cores} threads"] = rate
            row["torch.compile seconds (two warm-up steps)"] = compile_seconds
        except Exception as err:  # inductor needs a C++ compiler; say so instead of failing the benchmark
            row["torch.compile"] = f"failed: {type(err).__name__}: {str(err)[:200]}"
        rows.append({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()})
        print(rows[-1], flush=True)
    device = config.device_name("cpu").split(" (")[0] + f"-{cores}cores"
    out = Path(__file__).parent / "results" / f"training_throughput-{device}.json"
    write_json(out, {
        "benchmark": "training images/s of a step (forward, backward, SGD), batch of random inputs",
        "batch": args.batch, "steps": args.steps, "rows": rows, "device": config.device_name("cpu"),
        "torch": torch.__version__, "git_commit": git_commit(),
    })
    print(f"→ {out}")


if __name__ == "__main__":
    main()
