"""The sandbox's modules import each other without a cycle, and the account state never imports the HTTP layer."""

from __future__ import annotations

import ast
from pathlib import Path

import ac_pipeline.sandbox

PACKAGE = "ac_pipeline.sandbox"
SOURCES = Path(ac_pipeline.sandbox.__file__).parent
# Modules that answer HTTP: the account state (state.py and what it imports) must not depend on them.
HTTP_LAYER = {"responses", "listing", "contact_input", "app", "gate", "admin", "server"} | {
    path.stem for path in SOURCES.glob("*_api.py")
}


def sandbox_imports() -> dict[str, set[str]]:
    """Module name (within the package) -> the package's modules it imports, type-checking imports included."""
    graph: dict[str, set[str]] = {}
    for path in SOURCES.glob("*.py"):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == PACKAGE:
                    imported |= {alias.name for alias in node.names}
                elif node.module.startswith(PACKAGE + "."):
                    imported.add(node.module.removeprefix(PACKAGE + "."))
            elif isinstance(node, ast.Import):
                imported |= {a.name.removeprefix(PACKAGE + ".") for a in node.names if a.name.startswith(PACKAGE + ".")}
        graph[path.stem] = imported & {p.stem for p in SOURCES.glob("*.py")}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of modules, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            found = visit(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    return seen


def test_the_sandbox_has_no_import_cycle() -> None:
    assert cycle(sandbox_imports()) is None


def test_the_account_state_does_not_import_the_http_layer() -> None:
    assert reachable(sandbox_imports(), "state") & HTTP_LAYER == set()


def test_the_cycle_finder_finds_one() -> None:
    assert cycle({"bulk": {"responses"}, "responses": {"state"}, "state": {"bulk"}}) == [
        "bulk",
        "responses",
        "state",
        "bulk",
    ]
