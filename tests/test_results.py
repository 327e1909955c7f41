import json

import numpy as np
import pytest
import torch

from salbook import config, results, verdicts


def test_record_schema_and_atomic_write(tmp_path, monkeypatch):
    monkeypatch.setenv("SALBOOK_RESULTS", str(tmp_path))
    rec = results.RunRecord("mpe/01_demo", "smoke")
    rec.uses("MNIST original release (test)")
    rec.metrics["acc"] = np.float32(0.5)
    rec.metrics["counts"] = torch.tensor([1, 2])
    rec.claim("acc", "99 %", 0.99, np.float64(0.5),
              verdicts.contains(verdicts.Interval.point(0.5), 0.99, margin=0.01), note="tiny model")
    rec.check("finite", "maps are finite", True, "all 10")
    rec.substitution("net", "ResNet-50 93 %", "ResNet-8 78 %")
    path = rec.save()
    assert path == tmp_path / "smoke" / "mpe" / "01_demo.json"
    saved = json.loads(path.read_text())
    assert set(saved) == {"notebook", "profile", "device", "git_commit", "torch", "data_source", "seconds", "metrics", "claims",
                          "checks", "substitutions", "models", "runner"}
    assert saved["runner"] in ("jupyter", "script") and isinstance(saved["models"], list)
    assert saved["metrics"] == {"acc": 0.5, "counts": [1, 2]}
    claim = saved["claims"][0]
    assert claim["verdict"] == "not reproduced" and claim["rule"].startswith("contains:") and "0.99" in claim["rule"]
    assert saved["checks"] == [{"id": "finite", "statement": "maps are finite", "passed": True, "detail": "all 10"}]
    assert saved["substitutions"][0]["ours"] == "ResNet-8 78 %"
    assert results.load("smoke", tmp_path / "smoke")[0]["notebook"] == "mpe/01_demo"
    assert not list(path.parent.glob(".*tmp*"))


def test_verdicts_and_ids_are_checked():
    rec = results.RunRecord("x", "smoke")
    v = verdicts.exceeds(verdicts.Interval.point(1.0), 0.0)
    with pytest.raises(TypeError, match="rule of salbook.verdicts"):
        rec.claim("a", "p", 1, 1, "partly")
    with pytest.raises(ValueError, match="NaN"):
        rec.claim("a", "p", 1, {"rate": float("nan")}, v)
    rec.claim("a", "p", 1, 1, v)
    with pytest.raises(ValueError, match="twice"):
        rec.claim("a", "p", 1, 1, v)
    with pytest.raises(ValueError, match="twice"):
        rec.check("a", "p", True)


def test_smoke_results_are_not_committed(monkeypatch, tmp_path):
    monkeypatch.delenv("SALBOOK_RESULTS", raising=False)
    monkeypatch.setenv("SALBOOK_DATA", str(tmp_path))
    assert results.RunRecord("x", "smoke").path().is_relative_to(tmp_path)
    assert results.RunRecord("x", "cpu").path().parts[-3:] == ("results", "cpu", "x.json")


def test_a_declared_commit_wins_over_git(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("SALBOOK_GIT_COMMIT", raising=False)
    assert results.git_commit() == "unknown (not a git checkout)"
    monkeypatch.setenv("SALBOOK_GIT_COMMIT", "abc123")
    assert results.git_commit() == "abc123 (declared)"
    monkeypatch.setattr(config, "PROJECT_ROOT", config.Path(__file__).parent)  # inside a git checkout
    assert results.git_commit() == "abc123 (declared)"


def test_untracked_source_files_make_the_commit_dirty(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lib.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("SALBOOK_GIT_COMMIT", raising=False)
    clean = results.git_commit()
    assert not clean.endswith("+dirty")
    (tmp_path / "notes.txt").write_text("a stray file outside the code")
    (tmp_path / "src" / "__pycache__").mkdir()
    (tmp_path / "src" / "__pycache__" / "lib.pyc").write_bytes(b"ignored")
    assert results.git_commit() == clean
    (tmp_path / "src" / "new_module.py").write_text("y = 2\n")
    assert results.git_commit() == clean + "+dirty"


def test_load_record_finds_a_saved_record_and_skips_model_cards(tmp_path, monkeypatch):
    monkeypatch.setenv("SALBOOK_RESULTS", str(tmp_path))
    assert results.load_record("part/01_x", "cpu") is None
    rec = results.RunRecord("part/01_x", "cpu")
    rec.metrics["a"] = 1
    rec.save()
    (tmp_path / "cpu" / "models").mkdir()
    (tmp_path / "cpu" / "models" / "card.json").write_text(json.dumps({"test_acc": 0.9}))
    assert results.load_record("part/01_x", "cpu")["metrics"] == {"a": 1}
    assert [r["notebook"] for r in results.load("cpu")] == ["part/01_x"]


def test_a_corrupt_record_is_named(tmp_path):
    (tmp_path / "mpe").mkdir()
    bad = tmp_path / "mpe" / "01_x.json"
    bad.write_text('{"notebook": "mpe/01_x", ')
    with pytest.raises(ValueError, match=r"01_x.json is not valid JSON.*rerun its notebook"):
        results.load("smoke", tmp_path)
