"""The layout's rules (docs/architecture.md), read from the source: no import cycle, no private name imported from
another module, no oversized module. Imports inside functions count (a deferred import that dodges a cycle is still
a cycle); imports under ``if TYPE_CHECKING:`` do not."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "internvl_tools"
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "demo/model" not in p.as_posix()}


def type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and (
            (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        ):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def imports(module: str) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for every runtime import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if path.name == "__init__.py" else 0)
                target = ".".join(base[:keep] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                yield (full, None) if full in MODULES else (target, alias.name)


def owner(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


GRAPH = {m: {o for t, _ in imports(m) if (o := owner(t)) and o != m} for m in MODULES}


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module, a package with only its own submodules aside."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 and not any(
                all(x == a or x.startswith(a + ".") for x in component) for a in component
            ):
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    assert cycles() == []


def test_no_private_name_is_imported_from_another_module() -> None:
    offenders = []
    for module in MODULES:
        for target, name in imports(module):
            if name and name.startswith("_") and not name.startswith("__") and owner(target) not in (None, module):
                offenders.append(f"{module} imports {name} from {target}")
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_stays_small(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by concept"


def test_the_cycle_check_can_fail() -> None:
    # The rule must be able to fail: two modules importing each other are a cycle.
    saved = dict(GRAPH)
    try:
        GRAPH["internvl_tools.errors"] = {"internvl_tools.constants"}
        GRAPH["internvl_tools.constants"] = {"internvl_tools.errors"}
        assert ["internvl_tools.constants", "internvl_tools.errors"] in cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_layers_point_one_way() -> None:
    # Lower layers never import the surfaces above them (docs/architecture.md's picture).
    lower = (
        "internvl_tools.media",
        "internvl_tools.tiling",
        "internvl_tools.prompts",
        "internvl_tools.checkpoints",
        "internvl_tools.generation",
        "internvl_tools.grounding",
    )
    upper = (
        "internvl_tools.engines",
        "internvl_tools.documents",
        "internvl_tools.corpus",
        "internvl_tools.server",
        "internvl_tools.cli",
        "internvl_tools.demo",
    )
    wrong = [f"{m} -> {t}" for m in GRAPH if m.startswith(lower) for t in GRAPH[m] if t.startswith(upper)]
    assert wrong == []


def test_documents_never_import_engines_or_corpus() -> None:
    # documents takes an engine as an argument; the corpus surface (which builds engines in actors) sits above it.
    wrong = [
        f"{m} -> {t}"
        for m in GRAPH
        if m.startswith("internvl_tools.documents")
        for t in GRAPH[m]
        if t.startswith(("internvl_tools.engines", "internvl_tools.corpus"))
    ]
    assert wrong == []
