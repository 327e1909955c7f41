"""The pages' browser assets come from package-lock.json, are copied where _config.yml says, and never into
a _static/ folder that Jupyter Book would add to every page."""
import json

import pytest
import yaml

from salbook import book, config


def test_lockfile_pins_the_assets():
    lock = json.loads((config.PROJECT_ROOT / "package-lock.json").read_text())["packages"]
    assert lock["node_modules/mathjax"]["version"] == "3.2.2"
    assert lock["node_modules/requirejs"]["version"] == "2.3.7"
    assert lock["node_modules/@jupyter-widgets/html-manager"]["version"].startswith("1.0.")  # ipywidgets 8
    assert all("integrity" in entry for name, entry in lock.items() if name)


def test_vendor_copies_what_the_config_names(tmp_path):
    out = book.vendor(tmp_path)
    assert out == tmp_path / "_vendor" / "vendor"
    cfg = yaml.safe_load((config.PROJECT_ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert cfg["html_static_path"] == ["_vendor"]
    static = tmp_path / "_vendor"  # served as _static/
    assert (static / cfg["mathjax_path"]).exists()
    for path in cfg["nb_ipywidgets_js"]:
        assert (static / path).exists(), path
    assert cfg["nb_ipywidgets_js"]["vendor/embed-amd.js"]["data-jupyter-widgets-cdn"] == "about:blank"
    assert list((out / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert list((out / "jupyter-widgets").glob("*.woff2"))
    assert "require.config" in (out / "widgets-config.js").read_text()


def test_build_refuses_a_static_folder(tmp_path):
    (tmp_path / "_static").mkdir()
    with pytest.raises(RuntimeError, match="every page"):
        book.build(tmp_path)
