"""environment.yml (conda) and pyproject.toml (pip) must list the same dependencies."""
import tomllib

import yaml

from salbook import config


def test_environment_yml_matches_pyproject():
    pyproject = tomllib.loads((config.PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    pip_deps = set(pyproject["dependencies"]) | set(pyproject["optional-dependencies"]["dev"])
    env = yaml.safe_load((config.PROJECT_ROOT / "environment.yml").read_text())
    conda_pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(conda_pip) == pip_deps
