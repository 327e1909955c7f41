"""Write the README's measured numbers from the benchmark records, so that none is typed in.

Each block of README.md between ``<!-- readme.py:NAME -->`` and ``<!-- /readme.py:NAME -->`` is
generated here from ``benchmarks/results/*.json`` and ``checkpoints/cpu/*.json``::

    python benchmarks/readme.py          # rewrite the blocks in README.md
    python benchmarks/readme.py --check  # exit 1 if README.md differs from its records (run by the tests)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _commit(record: dict) -> str:
    return record["git_commit"].split()[0][:7] + (" +dirty" if "+dirty" in record["git_commit"] else "")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def quickstart() -> str:
    book = _load("book_time-cpu.json")
    return (f"* On a 2-core machine without a GPU, `make book` takes about {book['total_seconds'] / 60:.0f} minutes from "
            f"a fresh clone, plus\n  about {book['install_seconds'] / 60:.0f} minutes of `pip install` (measured at commit "
            f"{_commit(book)}: see [Benchmarks](#the-whole-book)).")


def whole_book() -> str:
    book = _load("book_time-cpu.json")
    head = _table([f"measurement ({book['profile']}, {book['machine']}, commit {_commit(book)})", "seconds"], [
        [f"**whole book, wall** (goal ≤ 2,700)", f"**{book['total_seconds']:.0f}**"],
        [f"`make env` in the clone (pip install, not part of the book's time)", f"{book['install_seconds']:.0f}"],
        ["decoding the datasets (MNIST, CIFAR-10)", f"{sum(book['datasets'].values()):.0f}"],
    ])
    notebooks = _table(["notebook", "seconds (including the models it trained)"],
                       [[nb, f"{s:.0f}"] for nb, s in sorted(book["notebooks"].items(), key=lambda kv: -kv[1])])
    trained = _table(["model trained in that run", "training seconds", "test accuracy", "first needed by"],
                     [[f"`{m['name']}`", f"{m['train_seconds']:.0f}", f"{m['test_acc']:.1%}"
                       + (" (on the true labels: it memorises permuted ones, by design)" if "permuted" in m["name"] else ""),
                       m["notebook"]] for m in book["models_trained"]])
    cards = [json.loads((ROOT / "checkpoints" / "cpu" / f"{name}.json").read_text())
             for name in sorted(book["models_from_checkpoints"])]
    committed = _table(["committed model", "origin (commit that trained it)", "training seconds (when published)",
                        "test accuracy"],
                       [[f"`{c['name']}`", f"checkpoint ({c['git_commit'][:7]})", f"{c['train_seconds']:.0f}",
                         f"{c['test_acc']:.1%}"] for c in cards])
    parts = [head, notebooks, trained, committed]
    if book.get("workflow"):  # book_time --workflow: the rest of the workflow's cpu path, dry-run in the clone
        parts.append(_table(["step of .github/workflows/book.yml after the build (dry run in the clone)", "seconds",
                             "result"],
                            [[s["step"], f"{s['seconds']:.0f}", "ok" if s["returncode"] == 0 else "failed"]
                             for s in book["workflow"]["steps"]]))
    return "\n\n".join(parts)


def training_throughput() -> str:
    t = _load("training_throughput-cpu-2cores.json")
    columns = ["default, 2 threads", "channels_last, 2 threads", "channels_last, 1 thread",
               "channels_last, 2 processes × 1 thread (sum)", "channels_last + torch.compile, 2 threads"]
    rows = [[f"`{r['architecture']}`", *(f"{r[c]:.0f}" for c in columns[:-1]),
             f"{r[columns[-1]]:.0f} ({r['torch.compile seconds (two warm-up steps)']:.0f} s to compile)"]
            for r in t["rows"]]
    intro = (f"`benchmarks/training_throughput.py`: training images per second of one step (forward, backward,\n"
             f"SGD) on random inputs, batch {t['batch']}, {t['steps']} timed steps after two warm-up steps; commit "
             f"{_commit(t)}, {t['device']}.")
    return intro + "\n\n" + _table(["network", *(c.replace("_", "-") for c in columns)], rows)


def mpe_table() -> str:
    rows = []
    for name, what in (("mnist", "MNIST train (60,000 images, n = 784), `mnist-cnn2`"),
                       ("cifar10", "CIFAR-10 train (50,000 images, n = 3072), `cifar-cnn4`")):
        r = _load(f"mpe_table-{name}-cpu.json")
        pairs = sorted(r["pairs_seconds"], key=lambda p: p["mpe_table"] / p["inference"])
        median = pairs[len(pairs) // 2]  # the pair whose ratio is the median: both times from the same pair
        assert abs(median["mpe_table"] / median["inference"] - r["ratio_median"]) < 0.01
        rows.append([what, r["device"].split(" (")[0].upper() + ", 2 cores", f"{median['inference']:.1f} s",
                     f"{median['mpe_table']:.1f} s", f"**{r['ratio_median']:.2f}**", _commit(r)])
    return _table(["benchmark", "device", "inference pass", "MPE table", "ratio (median pair of 3)", "commit"], rows)


def pertmap_throughput() -> str:
    full, cpu = _load("pertmap_throughput-full.json"), _load("pertmap_throughput-cpu.json")
    rows = []
    for r, note in ((full, "(`full` model)"), (cpu, "(the `cpu` model then; since removed from the zoo)")):
        goal = f" (goal {r['goal_on_gpu']}×: {'met' if r['ratio'] >= r['goal_on_gpu'] else 'not met'})" if "NVIDIA" in r["device"] else ""
        rows.append([f"{r['benchmark'].split(', ')[1]}, `{r['model']}` {note}", r["device"],
                     f"{r['batched_images_per_s_at_500_iterations']:.3g} img/s",
                     f"{r['single_images_per_s_at_500_iterations']:.3g} img/s", f"**{r['ratio']:.2f}×**{goal}", _commit(r)])
    n, iters = 128, 20  # from the full record's benchmark text
    assert f"{n} CIFAR-10 images × {iters} iterations" in full["benchmark"]
    step_ms, single_ms = full["batched_seconds"] / iters * 1e3, full["single_seconds"] / (n * iters) * 1e3
    text = (f"On the {full['device']} the batched run takes {step_ms:.0f} ms per step for {n} images × M = 32 samples, "
            f"one image {single_ms:.1f} ms per step: one image is launch-bound, the batch compute-bound, so the ratio "
            f"is capped by float32 throughput, not by Python; mixed precision would be the next lever, not taken "
            f"because it would change the optimisation. On the CPU both runs are compute-bound from the start "
            f"(32 samples per image already fill two cores): the ratio is {cpu['ratio']:.2f}×.")
    return _table(["benchmark", "device", "batched", "one at a time", "ratio", "commit"], rows) + "\n\n" + text


def decoys_batched() -> str:
    r = _load("decoys_batched-cpu.json")
    rows = [[f"`{r['model']}` (`{r['profile']}`), layer {r['layer']}, ε = {r['eps']}", r["device"],
             f"{r['batched_seconds_per_image']:.1f} s/img", f"{r['whole_image_seconds_per_image']:.1f} s/img",
             f"{r['loop_seconds_per_image']:.1f} s/img", f"**{r['ratio']:.1f}×** (crop alone {r['crop_speedup']:.1f}×)",
             _commit(r)]]
    return (f"{r['benchmark']}; largest difference between the decoys of the three ways: "
            f"{max(r['max_decoy_difference'], r['max_decoy_difference_whole']):.1g}.\n\n"
            + _table(["benchmark", "device", "batched, cropped", "batched, whole image", "one at a time", "ratio", "commit"], rows))


def jobs_executors() -> str:
    r = _load("jobs_executors.json")
    return _table(["benchmark", "device", "local", "Ray, 2 workers", "local / Ray", "commit"],
                  [[r["benchmark"], r["device"], f"{r['local_seconds']:.1f} s", f"{r['ray_2_workers_seconds']:.1f} s",
                    f"**{r['ratio_local_over_ray']:.2f}**", _commit(r)]]) + f"\n\n({r['note']}.)"


BLOCKS = {f.__name__: f for f in (quickstart, whole_book, training_throughput, mpe_table, pertmap_throughput,
                                  decoys_batched, jobs_executors)}


def render(readme: str) -> str:
    """``readme`` with every generated block rewritten; a block named in README but unknown here is an error."""
    pattern = re.compile(r"(<!-- readme\.py:(\w+) -->\n)(.*?)(\n<!-- /readme\.py:\2 -->)", re.S)
    names = [m.group(2) for m in pattern.finditer(readme)]
    unknown = set(names) - set(BLOCKS)
    if unknown:
        raise KeyError(f"README blocks {sorted(unknown)} have no generator in benchmarks/readme.py")
    return pattern.sub(lambda m: m.group(1) + BLOCKS[m.group(2)]() + m.group(4), readme)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md differs from its records")
    args = parser.parse_args(argv)
    path = ROOT / "README.md"
    text = path.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md's measured numbers differ from benchmarks/results/: run python benchmarks/readme.py")
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
