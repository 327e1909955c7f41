import json

import pytest

from salbook import jobs, timings
from salbook.jobs import Job


def test_nothing_is_written_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SALBOOK_TIMINGS", raising=False)
    monkeypatch.chdir(tmp_path)
    timings.log("model", "x", 1.0)
    assert list(tmp_path.iterdir()) == []


def test_events_are_appended_with_their_notebook(tmp_path, monkeypatch):
    log = tmp_path / "t.jsonl"
    monkeypatch.setenv("SALBOOK_TIMINGS", str(log))
    monkeypatch.setenv("SALBOOK_NOTEBOOK", "mpe/01_mnist_mpe")
    with timings.timed("model", "mnist-cnn2") as event:
        event["origin"] = "trained"
    timings.log("notebook", "mpe/01_mnist_mpe", 12.345)
    with open(log, "a") as f:
        f.write('{"kind": "grid", "na')  # a line cut short by a killed writer
    events = timings.read(log)
    assert [e["kind"] for e in events] == ["model", "notebook"]
    assert events[0]["origin"] == "trained" and events[0]["notebook"] == "mpe/01_mnist_mpe" and events[0]["seconds"] >= 0
    assert events[1]["seconds"] == 12.35
    with pytest.raises(ValueError, match="unknown timing kind"):
        timings.log("lunch", "x", 1)


def test_a_grid_logs_how_many_jobs_ran(tmp_path, monkeypatch):
    monkeypatch.setenv("SALBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SALBOOK_TIMINGS", str(tmp_path / "t.jsonl"))
    grid = [Job(jobs.reference_workload, {"seed": s, "size": 8, "rounds": 2}) for s in range(3)]
    jobs.run(grid[:1], "local", progress=False, desc="warm")
    jobs.run(grid, "local", progress=False, desc="reference grid")
    jobs.run(grid, "local", progress=False, desc="all cached")  # nothing ran: no event
    events = timings.read(tmp_path / "t.jsonl")
    assert [(e["name"], e["jobs"], e["ran"]) for e in events] == [("warm", 1, 1), ("reference grid", 3, 2)]
    assert events[1]["fn"] == "salbook.jobs.reference_workload"
    json.dumps(events)
