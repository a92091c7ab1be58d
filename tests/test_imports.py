"""No import cycle inside drivesync: a module never needs one that needs it back.

Every ``import`` / ``from ... import`` of a drivesync module counts, at the top
of a module and inside functions alike (a lazy import that dodges a cycle is
still a cycle); only ``if TYPE_CHECKING:`` blocks, never run, are left out.
Parsed with ast, nothing imported; takes milliseconds.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Dict, List, Set

import drivesync

ROOT = pathlib.Path(drivesync.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> List[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only)."""
    out: List[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def import_graph() -> Dict[str, Set[str]]:
    """module -> the drivesync modules it imports (``from . import x`` names x if it is one)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: Set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names]
                found = [s for s in subs if s in modules]
                edges.update(found)
                if len(found) < len(subs) and target in modules:
                    edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    lazy = ast.parse("def f():\n    from . import x\nif TYPE_CHECKING:\n    from . import y\n")
    kinds = [type(n).__name__ for n in _runtime_nodes(lazy)]
    assert kinds.count("ImportFrom") == 1


def test_no_import_cycle_in_drivesync():
    graph = import_graph()
    assert "drivesync.datasets.output" in graph["drivesync.datasets.shard"]
    assert find_cycles(graph) == []
