import json
from pathlib import Path

import pytest
import torch

from salbook import jobs
from salbook.jobs import Job


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SALBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SALBOOK_EXECUTOR", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path


def counted(index: int, log: str, flag: str) -> dict:
    """Logs each completed call; raises KeyboardInterrupt once (as a kill would) while ``flag`` exists."""
    if index == 3 and Path(flag).exists():
        Path(flag).unlink()
        raise KeyboardInterrupt
    with open(log, "a") as f:
        f.write(f"{index}\n")
    return {"index": index, "square": torch.tensor(index ** 2)}


def test_an_interrupted_grid_resumes_and_runs_only_the_rest(cache):
    log, flag = cache / "calls.log", cache / "kill-at-3"
    flag.touch()
    grid = [Job(counted, {"index": i, "log": str(log), "flag": str(flag)}) for i in range(6)]
    with pytest.raises(KeyboardInterrupt):
        jobs.run(grid, progress=False)
    assert log.read_text().split() == ["0", "1", "2"]
    second = jobs.run(grid, progress=False)
    assert second.ran == 3
    assert log.read_text().split() == ["0", "1", "2", "3", "4", "5"]
    assert [r["square"].item() for r in second.results] == [i * i for i in range(6)]
    third = jobs.run(grid, progress=False)
    assert third.ran == 0 and len(log.read_text().split()) == 6


def test_a_failing_job_is_reported_with_its_parameters_and_the_others_are_kept():
    grid = [Job(jobs.reference_workload, {"seed": s, "size": size}) for s, size in ((0, 16), (1, -1), (2, 16))]
    out = jobs.run(grid, progress=False)
    assert [r is None for r in out.results] == [False, True, False]
    assert len(out.failures) == 1 and out.failures[0].job.params == {"seed": 1, "size": -1}
    with pytest.raises(RuntimeError, match=r"'size': -1"):
        out.raise_failures()
    assert jobs.run(grid, progress=False).ran == 1  # only the failed one is tried again


def test_the_key_changes_with_parameters_and_code(monkeypatch):
    a, b = Job(jobs.reference_workload, {"seed": 0}), Job(jobs.reference_workload, {"seed": 1})
    key = a.key
    assert key != b.key and key == Job(jobs.reference_workload, {"seed": 0}).key
    monkeypatch.setattr(jobs, "code_version", lambda fn: "edited")
    assert a.key != key


def test_bad_jobs_and_executors_are_refused():
    with pytest.raises(ValueError, match="module-level"):
        Job(lambda: 1)
    with pytest.raises(ValueError, match="num_gpus"):
        Job(jobs.reference_workload, {"seed": 0}, {"gpus": 1})
    with pytest.raises(ValueError, match="unknown executor"):
        jobs.resolve_executor("slurm")


def test_executor_choice(monkeypatch):
    assert jobs.resolve_executor() == "local"
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert jobs.resolve_executor() == "ray"
    monkeypatch.setenv("SALBOOK_EXECUTOR", "local")
    assert jobs.resolve_executor() == "local"


def test_local_and_ray_give_identical_results(cache, monkeypatch):
    ray = pytest.importorskip("ray")
    grid = [Job(jobs.reference_workload, {"seed": s, "size": 64, "rounds": 5}) for s in range(4)]
    local = jobs.run(grid, "local", progress=False)
    monkeypatch.setenv("SALBOOK_DATA", str(cache / "ray-data"))  # a fresh cache: Ray must compute them all
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = jobs.run(grid, "ray", progress=False)
    finally:
        ray.shutdown()
    assert remote.ran == 4 and not remote.failures
    for a, b in zip(local.results, remote.results):
        assert a["seed"] == b["seed"] and a["norm"] == b["norm"] and torch.equal(a["x"], b["x"])
    assert json.dumps([r["seed"] for r in remote.results]) == "[0, 1, 2, 3]"


def test_uncached_jobs_always_run_and_store_nothing(cache):
    log = cache / "calls.log"
    grid = [Job(counted, {"index": i, "log": str(log), "flag": str(cache / "no-flag")}) for i in range(2)]
    first, second = jobs.run(grid, progress=False, cache=False), jobs.run(grid, progress=False, cache=False)
    assert first.ran == second.ran == 2 and len(log.read_text().split()) == 4
    assert [r["index"] for r in second.results] == [0, 1]
    assert not (cache / "data" / "jobs").exists()


def threads_and_workers(index: int) -> dict:
    """What a job sees of its process: torch threads and the pool size it would use itself."""
    import os

    return {"index": index, "threads": torch.get_num_threads(), "workers": os.environ.get("SALBOOK_WORKERS"),
            "pid": os.getpid()}


def test_the_process_pool_gives_the_local_results_with_one_thread_per_worker(cache, monkeypatch):
    import os

    monkeypatch.setenv("SALBOOK_WORKERS", "2")
    grid = [Job(jobs.reference_workload, {"seed": s, "size": 64, "rounds": 5}) for s in range(4)]
    local = jobs.run(grid, "local", progress=False)
    monkeypatch.setenv("SALBOOK_DATA", str(cache / "pool-data"))
    pooled = jobs.run(grid, "processes", progress=False)
    assert pooled.ran == 4 and not pooled.failures
    for a, b in zip(local.results, pooled.results):
        assert a["seed"] == b["seed"] and torch.allclose(a["x"], b["x"], atol=1e-6)
    seen = jobs.run([Job(threads_and_workers, {"index": i}) for i in range(4)], "processes", progress=False,
                    cache=False).results
    assert [r["index"] for r in seen] == [0, 1, 2, 3]
    assert {r["threads"] for r in seen} == {1} and {r["workers"] for r in seen} == {"1"}  # nested grids run inline
    assert os.getpid() not in {r["pid"] for r in seen}


def test_a_pool_of_one_runs_here(cache, monkeypatch):
    monkeypatch.setenv("SALBOOK_WORKERS", "1")
    import os

    seen = jobs.run([Job(threads_and_workers, {"index": 0})], "processes", progress=False, cache=False).results
    assert seen[0]["pid"] == os.getpid()
    monkeypatch.setenv("SALBOOK_WORKERS", "zero")
    with pytest.raises(ValueError, match="SALBOOK_WORKERS"):
        jobs.run([Job(threads_and_workers, {"index": 1})], "processes", progress=False, cache=False)


def test_the_key_covers_every_library_module_the_job_imports(tmp_path, monkeypatch):
    """A job's key changes when a module its module imports (even inside a function, even through
    another module) changes, and not when an unrelated module does."""
    pkg = tmp_path / "toypkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("from .sub import deep\nSCALE = 2\n")
    (pkg / "sub" / "deep.py").write_text("OFFSET = 1\n")
    (pkg / "other.py").write_text("UNUSED = 0\n")
    (pkg / "grid.py").write_text("def job(x):\n    from . import helper\n    return x * helper.SCALE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    jobs._package_root.cache_clear()
    jobs.module_closure.cache_clear()
    from toypkg import grid

    names = [p.relative_to(pkg).as_posix() for p in jobs.module_closure("toypkg.grid")]
    assert names == ["__init__.py", "grid.py", "helper.py", "sub/__init__.py", "sub/deep.py"]
    key = Job(grid.job, {"x": 1}).key
    (pkg / "other.py").write_text("UNUSED = 1\n")
    assert Job(grid.job, {"x": 1}).key == key
    (pkg / "sub" / "deep.py").write_text("OFFSET = 2\n")
    assert Job(grid.job, {"x": 1}).key != key


def test_a_corrupt_cache_file_is_named_deleted_and_rebuilt(cache):
    job = Job(jobs.reference_workload, {"seed": 0, "size": 8, "rounds": 1})
    first = jobs.run([job], progress=False).results[0]
    job.cache_path().write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match=str(job.cache_path().name)):
        again = jobs.run([job], progress=False)
    assert again.ran == 1 and again.results[0]["norm"] == first["norm"]
    assert jobs.run([job], progress=False).ran == 0  # rebuilt file is good
