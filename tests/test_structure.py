"""The house's structure: hera's modules import each other without a cycle
(module level, type-checking imports included), and every module says what
it is for in its docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hera

PACKAGE = Path(hera.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _module_level_imports(path: Path) -> set[str]:
    """hera modules imported at module level (``if`` blocks included, so
    ``if TYPE_CHECKING:`` counts; imports inside functions do not)."""
    body = ast.parse(path.read_text()).body
    nodes = [*body, *(inner for node in body if isinstance(node, ast.If) for inner in node.body)]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES}


def test_the_import_graph_has_no_cycle():
    graph = {name: _module_level_imports(path) - {name} for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert "hera.loop" not in graph["hera.prompt"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_says_what_it_is_for(name):
    docstring = ast.get_docstring(ast.parse(MODULES[name].read_text()))
    assert docstring and len(docstring.splitlines()[0]) > 10, name
