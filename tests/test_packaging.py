"""environment.yml (conda) and pyproject.toml (pip) must list the same dependencies."""
import tomllib
from pathlib import Path

import yaml

from salbook import config


def test_environment_yml_matches_pyproject():
    pyproject = tomllib.loads((config.PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    pip_deps = set(pyproject["dependencies"]) | set(pyproject["optional-dependencies"]["dev"])
    env = yaml.safe_load((config.PROJECT_ROOT / "environment.yml").read_text())
    conda_pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(conda_pip) == pip_deps


def test_the_readme_numbers_come_from_the_benchmark_records():
    """Every measured number in README.md sits in a block that benchmarks/readme.py writes from
    benchmarks/results/ and checkpoints/; outside those blocks no timing, rate or speed-up is typed in."""
    import re
    import runpy

    root = Path(__file__).resolve().parents[1]
    readme = runpy.run_path(str(root / "benchmarks" / "readme.py"))
    text = (root / "README.md").read_text()
    assert readme["render"](text) == text, "README.md is stale: run python benchmarks/readme.py"
    assert text.count("<!-- readme.py:") >= 7
    outside = re.sub(r"<!-- readme\.py:(\w+) -->.*?<!-- /readme\.py:\1 -->", "", text, flags=re.S)
    outside = re.sub(r"```.*?```", "", outside, flags=re.S)
    measured = re.findall(r"\d[\d,.]*\s*(?:s\b|%|×(?!\s*\d)|img/s|minutes|ms\b|seconds|hours|TFLOP)", outside)
    assert [m for m in measured if not re.fullmatch(r"(1\.5|20)\s*×", m)] == []  # the goals 1.5× and 20× are not measurements
