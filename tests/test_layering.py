"""No import cycles inside a package (shared/DESIGN.md, Layering).

``lint-imports`` keeps the floors between packages; this keeps each package's own modules acyclic. Every
import counts: at module level, inside a function, under ``TYPE_CHECKING``. The packages are the
import-linter's ``root_packages``, so a new package is checked as soon as the floors know it.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]


def modules(package: str) -> dict[str, Path]:
    """Dotted name → file of each module in ``package``, the generated stubs left out."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        if "v1" in relative.parts[:-1] or path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        parts = relative.with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every dotted name an import statement in ``tree`` names, wherever the statement is."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package (the package itself, for an __init__)
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module → the package's modules it imports (its own ancestor packages aside: importing a submodule runs them)."""
    files = modules(package)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        graph[module] = set()
        for name in imported_names(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py"):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    return graph


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_the_package(package: str):
    try:
        TopologicalSorter(import_graph(package)).prepare()
    except CycleError as cycle:
        pytest.fail(f"import cycle in {package}: {' -> '.join(cycle.args[1])}")


def test_every_import_counts_whatever_guards_it():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
                     "def f():\n    from . import c\n")
    assert set(imported_names(tree, "pkg.a", is_package=False)) >= {"pkg.b", "pkg.b.B", "pkg", "pkg.c"}
