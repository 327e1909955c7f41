"""The import directions of the library (README "Library layout"): data → attacks → zoo → methods →
yardsticks → grids → chapter. A module may import from its left, never from its right, so training a
model needs no attribution method, a method knows nothing of how it is graded, and no library module
depends on the notebooks' setup call (``chapter``)."""
import ast

import pytest

from salbook import config

SRC = config.PROJECT_ROOT / "src" / "salbook"
LAYERS = ["data", "attacks", "zoo", "methods", "yardsticks", "grids", "chapter"]


def layer(module: str) -> str | None:
    """The layer of a module path inside salbook (``methods.mpe`` → ``methods``), or None."""
    head = module.split(".")[0]
    return head if head in LAYERS else None


def imported(path) -> set[str]:
    """salbook modules a file imports (relative or absolute), as dotted paths inside salbook."""
    package = path.relative_to(SRC).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
            elif (node.module or "").startswith("salbook"):
                base, node_module = [], node.module.removeprefix("salbook").lstrip(".")
                found |= {".".join(filter(None, [node_module, a.name])) for a in node.names}
                continue
            else:
                continue
            mod = ".".join(base + ([node.module] if node.module else []))
            found |= {mod} | {f"{mod}.{a.name}".lstrip(".") for a in node.names}
    return {m.lstrip(".") for m in found}


def files_of(name):
    target = SRC / name
    return sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]


@pytest.mark.parametrize("name", LAYERS)
def test_no_layer_imports_one_to_its_right(name):
    right = set(LAYERS[LAYERS.index(name) + 1:])
    wrong = {f.relative_to(SRC).as_posix(): sorted(m for m in imported(f) if layer(m) in right)
             for f in files_of(name)}
    assert {f: m for f, m in wrong.items() if m} == {}


def test_the_checker_sees_a_wrong_import(tmp_path, monkeypatch):
    fake = tmp_path / "salbook"
    (fake / "methods").mkdir(parents=True)
    (fake / "zoo.py").write_text("from .methods.frank_wolfe import pgd_l2\nfrom . import data\n")
    (fake / "methods" / "x.py").write_text("from ..yardsticks import roar\nfrom salbook.zoo import fit\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    assert {"methods.frank_wolfe", "methods.frank_wolfe.pgd_l2"} <= imported(fake / "zoo.py")
    assert "yardsticks.roar" in imported(fake / "methods" / "x.py") and "zoo.fit" in imported(fake / "methods" / "x.py")
