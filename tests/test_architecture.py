"""The package's shape, read from its source with `ast` (nothing imported): dependencies point one way (no import
cycle between pvt_hf's modules, no import inside a function to dodge one) and modules stay small."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = {
    ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted((SRC / "pvt_hf").rglob("*.py"))
}
MAX_LINES = 400
LARGER = {"pvt_hf.modeling_pvt"}  # the model file: one code path for the whole family, read as one


def imported(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The pvt_hf modules an import statement of `module` loads (a name imported from a package is its submodule
    when one exists, else the package itself)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    base = ".".join(p for p in (package if node.level else "", node.module or "") if p)
    if base not in MODULES:
        return set()
    return {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}


def module_level_imports(module: str) -> set[str]:
    """What `module` imports when it is imported: its statements outside functions and classes."""
    found, pending = set(), list(ast.parse(MODULES[module].read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= imported(module, node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            pending.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))
    return found - {module}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that returns to its start, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():  # so that the next test can fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_reader_resolves_relative_imports():
    tree = ast.parse(
        "from . import schema\nfrom .. import data, metrics\nfrom ..data.images import rgb\nimport pvt_hf.hub"
    )
    edges = set().union(*(imported("pvt_hf.data.pipeline", node) for node in tree.body))
    assert edges == {"pvt_hf.data.schema", "pvt_hf.data", "pvt_hf.metrics", "pvt_hf.data.images", "pvt_hf.hub"}


def test_no_import_cycle_between_pvt_hf_modules():
    graph = {module: module_level_imports(module) for module in MODULES}
    assert {"pvt_hf.data.pipeline", "pvt_hf.data.schema"} <= graph["pvt_hf.data"]  # the reader sees the edges
    assert find_cycle(graph) is None


def test_no_function_level_import_of_pvt_hf_modules():
    """An import of one of our modules inside a function is how a cycle hides: dependencies point one way instead."""
    hidden = []
    for module, path in MODULES.items():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                statements = [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
                hidden += [f"{module}.{function.name}" for node in statements if imported(module, node)]
    assert hidden == []


@pytest.mark.parametrize("module", sorted(set(MODULES) - LARGER))
def test_modules_stay_small(module):
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES
