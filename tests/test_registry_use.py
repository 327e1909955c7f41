"""Grids, yardsticks and notebooks take their saliency methods only through the registry (issue 18).

The test reads the code cells of ``notebooks/**/*.md`` and the modules ``src/salbook/grids/*.py`` and
``src/salbook/yardsticks/*.py`` with :mod:`ast` and reports every place that builds a saliency method,
or decides by a method's name, outside :mod:`salbook.methods.registry`:

* a call of ``baselines.make`` (use ``registry.make(name, model, **options)``);
* a call of a method class: MPE, StochasticPertMap, LPPertMap, DecoyEnhanced, FrankWolfe, every
  ``AttributionMethod`` subclass of ``methods.baselines`` and every Captum attribution class;
* a call of ``torch.rand`` / ``torch.rand_like`` (a random map is the registry's ``"random"`` method;
  random numbers that are no map, such as a tie-break order, are allow-listed below with a reason);
* a comparison with a registered method's name (``method == "gradcam"``, ``name in ("lrp", ...)``):
  decide on the entry's declared ``registry.entry(name).output`` instead. Selecting rows of a results
  table by name (a comparison inside a subscript, ``runs[runs.method == "random"]``) is no decision
  about a method and is allowed.

Importing other things from the methods modules is fine: tables and samples (``mpe_table``,
``correction_arms``, ``mpe_attack_plan``), functions that compute perturbations rather than maps
(``frank_wolfe``, ``pgd_l1``, ``patch_masks``), or a model's layers (``baselines.last_conv``).
"""
from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass

import captum.attr
import pytest

from salbook import config
from salbook.methods import baselines, registry

ROOT = config.PROJECT_ROOT
CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)
RANDOM_CALLS = {"rand", "rand_like"}


def _subclasses(cls) -> set[str]:
    return {c.__name__ for c in cls.__subclasses__()} | {n for c in cls.__subclasses__() for n in _subclasses(c)}


METHOD_CLASSES = (
    {"MPE", "StochasticPertMap", "LPPertMap", "DecoyEnhanced", "FrankWolfe"}
    | _subclasses(baselines.AttributionMethod)
    | {n for n, c in vars(captum.attr).items() if inspect.isclass(c) and issubclass(c, captum.attr.Attribution)}
)

# (file, a piece of the offending line, why it is no saliency method built outside the registry)
ALLOWED = [
    ("src/salbook/yardsticks/grayflip.py", "tiebreak = torch.rand", "a seeded order of tied scores, not a map"),
    ("src/salbook/yardsticks/invariance.py", "u = torch.rand", "points sampled inside a box, not a map"),
    ("src/salbook/yardsticks/roar.py", "perm = torch.rand", "a seeded order of tied scores, not a map"),
    ("src/salbook/yardsticks/grayflip.py", 'if ties == "random"', "an option for tied scores, not a method's name"),
    ("src/salbook/yardsticks/properties.py", 'if rule in ("gradient", "guided_backprop")',
     "backward_signal measures the ReLU rule of these methods layer by layer (silenced units); its input "
     "map is tested equal to Captum's, it is no map a yardstick scores"),
    ("src/salbook/yardsticks/properties.py", 'if rule in ("deconvnet", "guided_backprop")',
     "the same measurement of the ReLU rules, its second half"),
    ("notebooks/pertmap/01_invariant_perturbation.md", "t_show = torch.rand",
     "a direction inside the box to show, not a map"),
    ("notebooks/decoys/01_decoys_and_limitations.md", "noisy = (x + (torch.rand",
     "noisy copies of an input, not a map"),
    ("notebooks/mpe/05_mpe_attack.md", "torch.rand(scores.shape, generator=gen)",
     "the random arm of the salt-and-pepper attack: pixel order and salt-or-pepper drawn in turn from one "
     "generator per seed (an attack plan, the control of mpe_attack_plan)"),
    ("notebooks/mpe/05_mpe_attack.md", "torch.rand(salt.shape, generator=gen)",
     "the random arm's salt-or-pepper choice, not a map"),
]


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    source: str
    problem: str

    def __str__(self):
        return f"{self.path}:{self.line}: {self.problem}\n    {self.source.strip()}"


def _called(func: ast.expr) -> tuple[str | None, str]:
    """(the object's name or None, the called name) of ``baselines.make``, ``MPE`` or ``torch.rand``."""
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else \
            func.value.attr if isinstance(func.value, ast.Attribute) else None
        return owner, func.attr
    return None, func.id if isinstance(func, ast.Name) else ""


def _strings(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e)]
    return []


def _in_subscripts(tree: ast.AST) -> set[int]:
    """ids of the comparisons inside a subscript (selecting table rows)."""
    return {id(n) for s in ast.walk(tree) if isinstance(s, ast.Subscript)
            for n in ast.walk(s.slice) if isinstance(n, ast.Compare)}


def violations(source: str, path: str = "<source>", first_line: int = 1, names=None) -> list[Violation]:
    """The places in ``source`` (Python) that build a method or decide by a method's name outside the registry."""
    names = set(registry.names() if names is None else names)
    tree = ast.parse(source)
    lines = source.splitlines()
    selecting = _in_subscripts(tree)
    found = []

    def report(node, problem):
        found.append(Violation(path, first_line + node.lineno - 1, lines[node.lineno - 1], problem))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            owner, called = _called(node.func)
            if owner == "baselines" and called == "make":
                report(node, "baselines.make builds a method outside the registry: use registry.make(name, model, ...)")
            elif called in METHOD_CLASSES:
                report(node, f"{called}(...) builds a method outside the registry: use registry.make(name, model, ...)")
            elif owner == "torch" and called in RANDOM_CALLS:
                report(node, "torch.rand makes a random map outside the registry: use registry.make('random', model, "
                             "seed=...) (or allow-list it in tests/test_registry_use.py with a reason if it is no map)")
        elif isinstance(node, ast.Compare) and id(node) not in selecting:
            hit = sorted({s for side in (node.left, *node.comparators) for s in _strings(side)} & names)
            if hit:
                report(node, f"compares with the method name(s) {hit}: decide on registry.entry(name).output (or "
                             "another declared property), or keep the method's options with its name")
    return found


def _allowed(v: Violation) -> bool:
    return any(v.path == path and piece in v.source for path, piece, _ in ALLOWED)


def sources():
    """(path, first line, Python source) of every notebook code cell, grid and yardstick module."""
    for nb in sorted((ROOT / "notebooks").rglob("*.md")):
        text = nb.read_text()
        for cell in CODE_CELL.finditer(text):
            code = "\n".join("" if re.match(r"^(:\w+:|%|!)", line) else line for line in cell.group(1).splitlines())
            yield nb.relative_to(ROOT).as_posix(), text.count("\n", 0, cell.start(1)) + 1, code
    for folder in ("grids", "yardsticks"):
        for module in sorted((ROOT / "src/salbook" / folder).glob("*.py")):
            yield module.relative_to(ROOT).as_posix(), 1, module.read_text()


def test_the_checker_finds_each_kind_of_violation():
    source = '''
from salbook.methods import baselines, registry
from salbook.methods.mpe import MPE
m = baselines.make("gradient", model)
e = MPE(table)
s = captum.attr.Saliency(model)
maps["Random"] = torch.rand(x.shape)
if method == "gradcam":
    pass
reduce = raw.mean(1) if name in ("lp_pertmap", "stochastic_pertmap") else raw.abs().sum(1)
ok = registry.make("gradient", model)
rows = runs[runs.method == "random"]
'''
    found = violations(source, "toy.py")
    assert [v.line for v in found] == [4, 5, 6, 7, 8, 10]
    assert "registry.make" in found[0].problem and "registry.make('random'" in found[3].problem
    assert "registry.entry(name).output" in found[4].problem and "toy.py:8" in str(found[4])


def test_the_checker_passes_registry_use():
    source = '''
method = registry.make(name, model, **options)
maps = registry.explain(method, x, targets, batch_size=64)
reduce = raw.abs().sum(1) if registry.entry(name).output.signed else raw.mean(1)
table = mpe_table(model, images)
'''
    assert violations(source) == []


def test_every_source_parses():
    for path, line, code in sources():
        try:
            ast.parse(code)
        except SyntaxError as error:
            pytest.fail(f"{path}:{line + (error.lineno or 1) - 1}: the walk cannot read this code: {error.msg}")


def test_no_grid_yardstick_or_notebook_builds_a_method_outside_the_registry():
    found = [v for path, line, code in sources() for v in violations(code, path, line)]
    bad = [v for v in found if not _allowed(v)]
    assert not bad, ("saliency methods built or chosen by name outside salbook.methods.registry:\n"
                     + "\n".join(map(str, bad)))
    unused = [(path, piece) for path, piece, _ in ALLOWED
              if not any(v.path == path and piece in v.source for v in found)]
    assert not unused, f"allow-list entries that match nothing any more (remove them): {unused}"
