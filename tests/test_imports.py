"""The daemon's modules form no import cycle (imports under TYPE_CHECKING,
which never run, aside): handler modules sit beside their objects, and the
op table, dispatcher and transports sit above them all."""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "daemon" / "iommud"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> set[str]:
    """Every iommud module imported when the module runs (lazy imports inside
    functions count: they run too)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names
                       if a.name.startswith("iommud.") and a.name.count(".") == 1)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "iommud":
                out.update(a.name for a in node.names)
            elif node.module.startswith("iommud."):
                out.add(node.module.split(".")[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in sorted(PACKAGE.glob("*.py")):
        deps = _runtime_imports(ast.parse(path.read_text()))
        graph[path.stem] = {d for d in deps if d in modules and d != path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state:
                found = dfs(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_daemon_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "ops" in graph and "device" in graph["ops"]  # the walk sees real edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_walk_finds_a_cycle_when_there_is_one() -> None:
    graph = import_graph()
    graph["context"] = graph["context"] | {"ops"}  # context -> ops -> context
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]


@pytest.mark.parametrize("module", ["call", "session", "context", "objects", "errors"])
def test_low_modules_import_no_handler_module(module: str) -> None:
    graph = import_graph()
    assert not graph[module] & {"ops", "dispatch", "service", "device", "vfio_compat", "ioas"}
