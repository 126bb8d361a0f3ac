"""The four packages import in one direction: no module reaches itself again through
any chain of imports, function-local ones included.

Imports under `if TYPE_CHECKING:` are left out: they name types for annotations and
never run. An edge goes to the module an import names (`from a.b import c` reaches
`a.b.c` when that is a module, else `a.b`); the implicit import of a package's
`__init__` is not counted, since a package re-exporting its modules is not a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nas", "netadapt", "search_spaces", "latency")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: dict[str, Path], here: str) -> list[tuple[str, int, bool]]:
    """(imported first-party module, line, function-local) of every import in `tree`."""
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for sub in child.orelse:
                    visit(sub, local)
                continue
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                names = [f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in modules
                         else child.module for a in child.names]
            for name in names:
                if name.split(".")[0] in PACKAGES and name in modules and name != here:
                    out.append((name, child.lineno, local))
            visit(child, inner)

    visit(tree, False)
    return out


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    local: list[str] = []
    for name, path in modules.items():
        graph[name] = set()
        for target, line, is_local in _imports(ast.parse(path.read_text()), modules, name):
            graph[name].add(target)
            if is_local:
                local.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return graph, local


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = walk(node)
            if found:
                return found
    return None


def test_no_import_circle() -> None:
    graph, _ = _graph()
    assert len(graph) > 80  # the packages were found
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_check_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_local_first_party_imports() -> None:
    """A first-party import inside a function hides an edge from a reader; each one
    that remains would be a circle held apart by import order."""
    _, local = _graph()
    assert local == []


def test_the_config_imports_no_command_or_stage() -> None:
    graph, _ = _graph()
    above = {m for m in graph if m.startswith(("nas.stages", "nas.cli", "nas.pipeline",
                                                "nas.experiment", "nas.show"))}
    seen, todo = set(), ["nas.config"]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    assert not seen & above, sorted(seen & above)
