"""Layering: environments, measures, figures and the text-file readers are leaves. Every import
of their modules (at module level, inside functions, under TYPE_CHECKING) is read with `ast`
and held to a rule:

- `gflownets.envs` may import only gflownets.envs, .errors, .measures, .figures and .textfiles;
- `gflownets.measures` only gflownets.measures and .errors;
- `gflownets.figures` and `gflownets.textfiles` only gflownets.errors; `gflownets.caches` nothing;
- `gflownets.datasets` only gflownets.datasets and .errors.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

#: layer -> the parts of the package it may import (itself included)
ALLOWED = {
    "gflownets.envs": ("gflownets.envs", "gflownets.errors", "gflownets.measures", "gflownets.figures",
                       "gflownets.textfiles", "gflownets.chemistry"),
    # molecules: RDKit scoring and metrics, below the environments that build molecules
    "gflownets.chemistry": ("gflownets.chemistry", "gflownets.errors", "gflownets.user_code", "gflownets.caches"),
    "gflownets.caches": (),
    "gflownets.user_code": ("gflownets.errors",),
    "gflownets.measures": ("gflownets.measures", "gflownets.errors"),
    "gflownets.figures": ("gflownets.errors",),
    "gflownets.textfiles": ("gflownets.errors",),
    "gflownets.datasets": ("gflownets.datasets", "gflownets.errors"),
}


def module_of(path: Path) -> str:
    """Dotted module name of a source file under src/ (a package's __init__ is the package)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_files() -> list[Path]:
    files = sorted((SRC / "gflownets" / "envs").rglob("*.py")) + sorted((SRC / "gflownets" / "measures").rglob("*.py"))
    files += sorted((SRC / "gflownets" / "datasets").rglob("*.py"))
    files += sorted((SRC / "gflownets" / "chemistry").rglob("*.py"))
    return files + [SRC / "gflownets" / "figures.py", SRC / "gflownets" / "textfiles.py",
                    SRC / "gflownets" / "user_code.py", SRC / "gflownets" / "caches.py"]


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, dotted module) of every import anywhere in `source` (module level, in functions,
    under TYPE_CHECKING), relative ones resolved against `module`. `from gflownets import x`
    (or `from .. import x` that reaches the root) counts as importing gflownets.x; calls of
    importlib.import_module / __import__ with a literal name count too."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target == "gflownets":
                found += [(node.lineno, f"gflownets.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(source: str, module: str, filename: str, is_package: bool = False) -> list[str]:
    """'file:line: module (layer) imports name; allowed: ...' for each import of gflownets that
    the layer of `module` forbids."""
    layer = next(prefix for prefix in ALLOWED if _within(module, prefix))
    allowed = ALLOWED[layer]
    return [f"{filename}:{line}: {module} ({layer}) imports {name}; allowed: {', '.join(allowed)}"
            for line, name in imported_modules(source, module, is_package)
            if _within(name, "gflownets") and not any(_within(name, ok) for ok in allowed)]


@pytest.mark.parametrize("path", layer_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_leaf_layers_import_only_what_their_rule_allows(path):
    problems = violations(path.read_text(), module_of(path), str(path.relative_to(SRC.parent)),
                          is_package=path.name == "__init__.py")
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


def test_layers_are_found():
    names = {module_of(p) for p in layer_files()}
    assert {"gflownets.envs.base", "gflownets.envs.dag", "gflownets.measures.diversity",
            "gflownets.figures"} <= names


FORBIDDEN = '''\
from __future__ import annotations
from typing import TYPE_CHECKING

import numpy as np

from gflownets.envs.base import DiscreteEnv
from gflownets.measures import hamming_matrix
from gflownets import errors
from . import indexing

if TYPE_CHECKING:
    from gflownets.evaluation.exact import StateGraph


def plots(run):
    from gflownets.plotting import write_plots
    import gflownets.training.trainer
    from .. import cli
    from gflownets import sampling
    return importlib.import_module("gflownets.policies.mlp")
'''


def test_the_checker_reports_every_forbidden_import():
    problems = violations(FORBIDDEN, "gflownets.envs.toy", "toy.py")
    reported = {(p.split(":")[1], p.split(" imports ")[1].split(";")[0]) for p in problems}
    assert reported == {("12", "gflownets.evaluation.exact"), ("16", "gflownets.plotting"),
                        ("17", "gflownets.training.trainer"), ("18", "gflownets.cli"),
                        ("19", "gflownets.sampling"), ("20", "gflownets.policies.mlp")}, problems
    assert problems[0].startswith("toy.py:12: gflownets.envs.toy (gflownets.envs) imports")


def test_measures_and_figures_may_import_only_errors():
    source = "from gflownets.errors import DataError\nfrom gflownets.envs.base import DiscreteEnv\n"
    assert violations(source, "gflownets.figures", "figures.py") == [
        "figures.py:2: gflownets.figures (gflownets.figures) imports gflownets.envs.base; "
        "allowed: gflownets.errors"]
    assert [p.split(":")[1] for p in violations(source, "gflownets.measures.x", "x.py")] == ["2"]
    assert violations("from gflownets.measures.distances import hamming_matrix\n",
                      "gflownets.measures.diversity", "diversity.py") == []
