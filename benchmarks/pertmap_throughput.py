"""Benchmark: stochastic PertMap batched over images vs one image at a time.

Both runs do the same work (the same images, iterations and samples per image); the batched run
optimises all images' boxes in one Adam loop. Reports images per second for each and their ratio
(the issue's goal: ≥ 20× on a GPU). Writes benchmarks/results/pertmap_throughput-<profile>.json.

    python benchmarks/pertmap_throughput.py [--profile cpu] [--images 16] [--iterations 20] [--samples 32]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from salbook import config, data, zoo
from salbook.methods.pertmap import StochasticPertMap
from salbook.results import git_commit
from salbook.storage import write_json

MODELS = {"smoke": "cifar-cnn4", "cpu": "cifar-cnn4", "full": "cifar-vgg16bn"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
    profile = config.resolve_profile(args.profile)
    model = zoo.get(MODELS[profile], profile).model
    x = data.to_input(data.cifar10("test").x[: args.images], config.default_device())
    options = dict(iterations=args.iterations, samples=args.samples, progress=False)

    def timed(fn):
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if x.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    StochasticPertMap(model, iterations=2, samples=args.samples, progress=False).attribute(x)  # warm-up
    batched = timed(lambda: StochasticPertMap(model, **options).attribute(x))
    single = timed(lambda: [StochasticPertMap(model, **options).attribute(x[k:k + 1]) for k in range(len(x))])
    result = {
        "benchmark": f"stochastic PertMap, {args.images} CIFAR-10 images × {args.iterations} iterations × M = {args.samples}",
        "model": MODELS[profile], "batched_seconds": round(batched, 3), "single_seconds": round(single, 3),
        "batched_images_per_s_at_500_iterations": round(args.images / batched * args.iterations / 500, 4),
        "single_images_per_s_at_500_iterations": round(args.images / single * args.iterations / 500, 4),
        "ratio": round(single / batched, 2), "goal_on_gpu": 20,
        "profile": profile, "device": config.device_name(), "torch": torch.__version__, "git_commit": git_commit(),
    }
    write_json(Path(__file__).parent / "results" / f"pertmap_throughput-{profile}.json", result)
    print(result)


if __name__ == "__main__":
    main()
