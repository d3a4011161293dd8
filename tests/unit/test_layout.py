"""The package's layout: no import cycle between its modules, every exception in errors.py.

Read from the source with ``ast`` (imports under ``TYPE_CHECKING`` count too), so a cycle
that only type checkers would see is still found. ``testing/`` is left out: the fake
portal is a separate tool that may import anything of the SDK.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bitrix_openlines

PACKAGE = Path(bitrix_openlines.__file__).resolve().parent
ROOT = "bitrix_openlines"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(f"{ROOT}.testing"):
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        candidates: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            # The package's own __init__ re-exports everything: an edge to it is no cycle.
            if candidate and candidate not in (name, ROOT):
                targets.add(candidate)
                break
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_the_package_modules() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) & set(modules) for name, path in modules.items()}
    assert "bitrix_openlines.session" in graph
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_every_exception_class_lives_in_errors_py() -> None:
    elsewhere = []
    for name, path in _modules().items():
        if name == f"{ROOT}.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(base) for base in node.bases}
                if node.name.endswith(("Error", "Exception")) or any(
                    b.endswith(("Error", "Exception")) for b in bases
                ):
                    elsewhere.append(f"{name}.{node.name}")
    assert elsewhere == []
