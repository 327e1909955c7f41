"""The GitHub Actions workflows pass actionlint, and the publishing workflow has the shape README.md describes."""
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from salbook import config

WORKFLOWS = config.PROJECT_ROOT / ".github" / "workflows"


def actionlint() -> str:
    found = Path(sys.executable).parent / "actionlint"
    return str(found) if found.exists() else shutil.which("actionlint")


def test_actionlint_passes():
    exe = actionlint()
    assert exe, "actionlint is missing: it is in the dev extra (pip install -e '.[dev]')"
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files
    done = subprocess.run([exe, "-no-color", *map(str, files)], cwd=config.PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_book_workflow_shape():
    flow = yaml.safe_load((WORKFLOWS / "book.yml").read_text())
    triggers = flow[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"push", "workflow_dispatch"}  # no pull_request: forks never reach the GPU runner
    assert flow["concurrency"]["cancel-in-progress"] is False
    jobs = flow["jobs"]
    gpu, cpu = jobs["execute-gpu"], jobs["execute-cpu"]
    assert "self-hosted" in gpu["runs-on"] and "gpu" in gpu["runs-on"]
    assert "--profile full" in str(gpu["steps"]) and "--profile cpu" in str(cpu["steps"])
    assert gpu["if"] == "vars.GPU_RUNNER == 'true'" and cpu["if"] == "vars.GPU_RUNNER != 'true'"
    for job in (gpu, cpu):
        upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
        assert "book/notebooks/" in upload["with"]["path"]
    assert "results/full/" in str(gpu["steps"]) and "SALBOOK_DATA" in gpu["env"]
    assert any(str(s.get("uses", "")).startswith("actions/cache") and s["with"]["path"] == "data/" for s in cpu["steps"])
    build = jobs["build"]
    assert set(build["needs"]) == {"execute-gpu", "execute-cpu"}
    assert any(str(s.get("uses", "")).startswith("actions/upload-pages-artifact") for s in build["steps"])
    assert "salbook.book build" in str(build["steps"]) and "sitecheck.py" in str(build["steps"])
    deploy = jobs["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in deploy["steps"])
    assert flow["permissions"] == {"contents": "read"}
