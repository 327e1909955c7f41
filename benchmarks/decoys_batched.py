"""Benchmark: decoys of a 32×32 image solved on crops and batched, against the whole image and one at a time.

All three runs solve the same 2n problems of eq. 2 with the same solver and settings:

* ``batched`` (the library's default): every decoy on the crop its patch can influence (exact: a unit
  of F_ℓ sees only its receptive field), all 2n decoys of an image as rows of one penalty-method loop;
* ``whole``: the same batch, each decoy solved on the whole image (``crop=False``);
* ``loop``: on crops, one (mask, direction) per forward pass (``generate_decoys_loop``).

Reports seconds per image for each, the speed-ups, the largest difference between the sets of decoys
and their mean objective (the same work, so all should agree). One torch thread by default, as in the
book's lanes. Writes benchmarks/results/decoys_batched-<profile>.json.

    python benchmarks/decoys_batched.py [--profile cpu] [--images 2] [--steps 100] [--layer 3] [--eps 0.3] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from salbook import config, data, zoo
from salbook.methods.decoys import generate_decoys, generate_decoys_loop
from salbook.results import git_commit
from salbook.storage import write_json

MODEL = "cifar-resnet8"  # the cheapest CIFAR-10 zoo network: F_ℓ costs little, so per-call overhead shows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--patch", type=int, default=3)
    parser.add_argument("--stride", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = config.resolve_profile(args.profile)
    model = zoo.get(MODEL, profile).model
    x = data.to_input(data.cifar10("test").x[: args.images], config.default_device())
    options = dict(patch=args.patch, stride=args.stride, steps=args.steps, progress=False)

    def timed(fn):
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if x.is_cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / args.images, out

    generate_decoys(model, x[:1], args.layer, args.eps, **{**options, "steps": 2})  # warm-up
    batched, b = timed(lambda: generate_decoys(model, x, args.layer, args.eps, **options))
    whole, w = timed(lambda: generate_decoys(model, x, args.layer, args.eps, crop=False, **options))
    loop, lo = timed(lambda: generate_decoys_loop(model, x, args.layer, args.eps, **options))
    result = {
        "benchmark": f"decoys of {args.images} CIFAR-10 image(s): {b.decoys.shape[1]} decoys each "
                     f"({args.patch}×{args.patch} patches, stride {args.stride}, both directions), {args.steps} steps",
        "model": MODEL, "layer": args.layer, "eps": args.eps,
        "batched_seconds_per_image": round(batched, 3),
        "whole_image_seconds_per_image": round(whole, 3),
        "loop_seconds_per_image": round(loop, 3),
        "crop_speedup": round(whole / batched, 2),
        "ratio": round(loop / batched, 2),
        # float sums differ with the batch and crop shapes; over many steps that can flip a feasibility
        # test at the ε boundary and send one decoy down a slightly different path: compare quality too
        "max_decoy_difference": float((b.decoys - lo.decoys).abs().max()),
        "max_decoy_difference_whole": float((b.decoys - w.decoys).abs().max()),
        "mean_objective": {"batched": _objective(b, x), "whole": _objective(w, x), "loop": _objective(lo, x)},
        "violation_rate": {"batched": b.violation_rate, "whole": w.violation_rate, "loop": lo.violation_rate},
        "profile": profile, "device": config.device_name(), "torch": torch.__version__, "git_commit": git_commit(),
    }
    write_json(Path(__file__).parent / "results" / f"decoys_batched-{profile}.json", result)
    print(result)


def _objective(decoys, x) -> float:
    """Mean over decoys of eq. 2's objective ‖((x̃ − x)·s)⁺‖₁."""
    move = (decoys.decoys - x.cpu()[:, None]) * decoys.signs.view(1, -1, 1, 1, 1)
    return round(float(move.clamp(min=0).flatten(2).sum(2).mean()), 4)


if __name__ == "__main__":
    main()
