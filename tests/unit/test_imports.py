"""The command modules import each other in no circle; ``launcher`` starts Locust for all of them.

Imports are read from the source (function-level imports too, which is where cycles used to hide),
so the test needs no import side effects.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "seldon_load"
COMMAND_MODULES = ("seldon_load.cli", "seldon_load.demo", "seldon_load.isolate", "seldon_load.launcher")


def module_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        if "_generated" in path.parts:
            continue
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)  # from pkg import module
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only, never imported at run time)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_command_or_testbed_module_is_in_an_import_cycle() -> None:
    graph = module_graph()
    assert set(COMMAND_MODULES) <= set(graph)
    ours = [c for c in cycles(graph) if any(m in COMMAND_MODULES or m.startswith("seldon_load.testbed") for m in c)]
    assert ours == []


def test_no_module_of_the_package_is_in_an_import_cycle() -> None:
    assert cycles(module_graph()) == []


def test_type_checking_imports_are_not_run_time_edges() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\nimport c\n")
    names = {alias.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for alias in n.names}
    assert names == {"b", "c"}


def test_demo_and_isolate_start_locust_through_the_launcher() -> None:
    graph = module_graph()
    for name in ("seldon_load.demo", "seldon_load.isolate", "seldon_load.cli"):
        assert "seldon_load.launcher" in graph[name], name
    assert not graph["seldon_load.launcher"] & {"seldon_load.cli", "seldon_load.demo", "seldon_load.isolate"}
    assert "seldon_load.cli" not in graph["seldon_load.demo"] | graph["seldon_load.isolate"]
