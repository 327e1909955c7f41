"""Experiment grids as jobs: run here (``local``), in a pool of worker processes on this machine
(``processes``), or, unchanged, on a Ray cluster (``ray``).

A grid is a list of :class:`Job` — a module-level function, its keyword parameters and the
resources one call needs. Every job has a content hash of the function's name, its parameters and
the source of the module that defines it together with every ``salbook`` module that module imports,
directly or not (:func:`code_version`), and its result is cached under
``data/jobs/<function>/<hash>.pt`` (written atomically by the driver, loaded with
``torch.load(weights_only=True)``). So a killed grid resumes where it stopped, a finished job never
runs twice, and editing any library code a job can reach invalidates its results: a result replayed
from the cache was computed by the code of the commit that records it. Jobs that use a trained model
also carry its weights' SHA-256 in their parameters. A cache file that cannot be read (a disk full, a
killed copy) is reported by name, deleted and computed again.

Results must be built from tensors, numbers, strings, lists, tuples and dicts (numpy arrays and
scalars are converted to tensors and Python numbers).

Example::

    grid = [Job(roar.retrain, {"method": m, "fraction": f, "seed": s}, {"num_gpus": 1})
            for m in methods for f in fractions for s in seeds]
    out = run(grid)                 # executor: "local", or "ray" when RAY_ADDRESS is set
    out.raise_failures()            # or inspect out.failures; the other results are kept
"""
from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import ast
import importlib
import importlib.util
import multiprocessing
import os
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import config, timings
from .storage import atomic_path, content_hash

EXECUTORS = ("local", "processes", "ray")
_MISSING = object()  # no usable cached result


@dataclass(frozen=True)
class Job:
    """One call ``fn(**params)``; ``resources`` in Ray's terms (``num_cpus``, ``num_gpus``)."""

    fn: Callable
    params: dict = field(default_factory=dict)
    resources: dict = field(default_factory=lambda: {"num_cpus": 1})

    def __post_init__(self):
        qualname = getattr(self.fn, "__qualname__", "")
        if "<" in qualname or "." in qualname or getattr(self.fn, "__module__", None) in (None, "__main__"):
            raise ValueError(f"job functions must be module-level functions of an importable module, not {self.fn!r}: "
                             "a Ray worker imports them by name")
        unknown = set(self.resources) - {"num_cpus", "num_gpus"}
        if unknown:
            raise ValueError(f"unknown resources {sorted(unknown)}: use num_cpus and num_gpus")

    @property
    def name(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    @property
    def key(self) -> str:
        """Hash of function name, parameters and the source of the function's module."""
        return content_hash({"fn": self.name, "params": self.params, "code": code_version(self.fn)}, length=16)

    def cache_path(self) -> Path:
        return config.data_dir() / "jobs" / self.name / f"{self.key}.pt"


@dataclass
class Failure:
    job: Job
    traceback: str

    def __str__(self) -> str:
        return f"{self.job.name}({self.job.params}) failed:\n{self.traceback}"


@dataclass
class GridResult:
    """``results[i]`` belongs to ``jobs[i]`` (None where the job failed)."""

    jobs: list[Job]
    results: list[Any]
    failures: list[Failure]
    ran: int  # jobs executed in this call (the others came from the cache)

    def raise_failures(self) -> None:
        if self.failures:
            raise RuntimeError(f"{len(self.failures)} of {len(self.jobs)} jobs failed "
                               f"(the others' results are cached):\n\n" + "\n\n".join(map(str, self.failures)))


def code_version(fn: Callable) -> str:
    """SHA-256 of the sources of the module defining ``fn`` and of every module of its top-level
    package (``salbook``) that it imports, directly or through other such modules (imports inside
    functions included)."""
    root = _package_root(fn.__module__.split(".")[0])
    digest = hashlib.sha256()
    for path in module_closure(fn.__module__):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[Path, ...]:
    """Source files of ``module`` and of the modules of its package it imports, transitively, sorted."""
    package = module.split(".")[0]
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = _source_of(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        todo += [m for m in _imports(path, name) if m.split(".")[0] == package]
    return tuple(sorted(set(seen.values())))


@functools.lru_cache(maxsize=None)
def _package_root(package: str) -> Path:
    return Path(importlib.util.find_spec(package).origin).parent


def _source_of(name: str) -> Path | None:
    """The source file of module ``name`` of a package on disk, or None if there is no such module."""
    head, *parts = name.split(".")
    base = _package_root(head).joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if parts and path.is_file() or not parts and path.name == "__init__.py" and path.is_file():
            return path
    return None


def _imports(path: Path, name: str) -> list[str]:
    """Modules named by the import statements of ``path`` (module ``name``), relative ones resolved;
    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule; names that are not
    modules are dropped by :func:`module_closure`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def resolve_executor(executor: str | None = None) -> str:
    """``executor`` if given, else ``SALBOOK_EXECUTOR``, else ``ray`` when ``RAY_ADDRESS`` is set, else ``local``."""
    executor = executor or os.environ.get("SALBOOK_EXECUTOR") or ("ray" if os.environ.get("RAY_ADDRESS") else "local")
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: choose one of {EXECUTORS}")
    return executor


def run(jobs: list[Job], executor: str | None = None, progress: bool = True, desc: str = "jobs",
        cache: bool = True) -> GridResult:
    """Run the jobs whose results are not cached, cache each result as it arrives, return all of them.

    ``cache=False`` runs every job and stores nothing (for jobs whose effect is a file, such as
    executing a notebook).
    """
    executor = resolve_executor(executor)
    results: list[Any] = [None] * len(jobs)
    todo = []
    for i, job in enumerate(jobs):
        path = job.cache_path()
        cached_value = _load_cached(path) if cache else _MISSING
        if cached_value is _MISSING:
            todo.append(i)
        else:
            results[i] = cached_value
    failures: list[Failure] = []
    start = time.perf_counter()
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"{desc} ({executor})", disable=not progress) as bar:
        stream = {"local": _run_local, "processes": _run_processes, "ray": _run_ray}[executor](jobs, todo)
        for i, ok, value in stream:
            bar.update()
            if not ok:
                failures.append(Failure(jobs[i], value))
                continue
            if cache:
                _store(jobs[i].cache_path(), value)
            results[i] = value
    if todo:
        timings.log("grid", desc, time.perf_counter() - start, fn=jobs[todo[0]].name, jobs=len(jobs), ran=len(todo),
                    failed=len(failures), executor=executor)
    return GridResult(jobs, results, failures, ran=len(todo))


def cached(job: Job) -> Any:
    """The result of one job: from the cache, or computed here and cached. Raises if the job fails.

    Chapters run in parallel may ask for the same job (an MPE table, a model's test predictions):
    a lock per job makes the second wait for the first's result instead of computing it again."""
    lock = job.cache_path().with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            out = run([job], "local", progress=False, desc=job.fn.__name__)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    out.raise_failures()
    return out.results[0]


def call(name: str, params: dict) -> tuple[bool, Any]:
    """Import ``module.function`` by name and call it; (True, result) or (False, traceback text)."""
    module, _, fn = name.rpartition(".")
    try:
        return True, _plain(getattr(importlib.import_module(module), fn)(**params))
    except Exception:  # noqa: BLE001 - reported with the job's parameters, the grid goes on
        return False, traceback.format_exc()


def _run_local(jobs, todo):
    for i in todo:
        yield (i, *call(jobs[i].name, jobs[i].params))


def _run_processes(jobs, todo):
    """A pool of ``config.workers()`` fresh processes with one torch thread each: on a small CPU
    several single-threaded jobs use the cores better than one job with several threads (small
    networks barely speed up with threads). A pool of one runs the jobs here, one after another."""
    workers = min(config.workers(), len(todo))
    if workers <= 1:
        yield from _run_local(jobs, todo)
        return
    context = multiprocessing.get_context("spawn")  # a fork would copy torch's thread pools half-initialised
    with ProcessPoolExecutor(workers, mp_context=context, initializer=single_threaded) as pool:
        futures = {pool.submit(call, jobs[i].name, jobs[i].params): i for i in todo}
        for future in as_completed(futures):
            yield (futures[future], *future.result())


def single_threaded() -> None:
    """Initialise a pool worker: one torch thread, and the same for any process it starts (kernels,
    nested grids, which then run their jobs one after another)."""
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SALBOOK_WORKERS="1")
    torch.set_num_threads(1)


def _run_ray(jobs, todo):
    try:
        import ray
    except ImportError as err:
        raise ImportError("the ray executor needs Ray: pip install 'ray>=2.9' (or the project's [ray] extra)") from err
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    remote = ray.remote(call)
    pending = {remote.options(**jobs[i].resources).remote(jobs[i].name, jobs[i].params): i for i in todo}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done[0])
        yield (i, *ray.get(done[0]))


def _load_cached(path: Path) -> Any:
    """The cached result at ``path``, or ``_MISSING`` if there is none; an unreadable file is reported
    by name, deleted and left to be computed again."""
    if not path.exists():
        return _MISSING
    try:
        return torch.load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable cache file is rebuilt, never trusted
        warnings.warn(f"job cache file {path} cannot be read ({type(err).__name__}: {err}); deleting it and "
                      "computing the job again")
        path.unlink(missing_ok=True)
        return _MISSING


def _store(path: Path, value: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(value, tmp)


def _plain(obj: Any) -> Any:
    """numpy → torch / Python numbers, recursively, so the result loads with ``weights_only=True``."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj):
        raise TypeError(f"job results must be plain data, not {type(obj).__name__}: return a dict")
    return obj


def reference_workload(seed: int, size: int = 256, rounds: int = 20) -> dict:
    """A small deterministic CPU job (``rounds`` products of two size × size matrices) for the tests
    and the executor benchmark."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(size, size, generator=gen) / size ** 0.5
    x = torch.randn(size, size, generator=gen)
    for _ in range(rounds):
        x = torch.tanh(a @ x)
    return {"seed": seed, "norm": x.norm().item(), "x": x[0, :4]}
