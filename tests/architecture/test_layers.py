"""The package's layering, read statically from the source (docs/architecture.md).

The pipeline reads bottom-up: the foundation modules (`errors`, `_session`, `_settings`, ...) →
`data` → `augment` → `train` → `measure` → `results` → `audits` → `report` → `fixture` / `plugin`
/ `cli`. A module may import its own layer and the layers below it, never one above; nothing
imports `pytest_psa.plugin` (pytest loads it; the session object lives in `_session`); and there
are no import circles. Imports under ``if TYPE_CHECKING:`` count too: a type-only edge upward is
still a knot for the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_psa

PACKAGE = Path(pytest_psa.__file__).parent
ROOT = PACKAGE.name

# layer of each top-level room; a module may import only rooms whose layer is <= its own
FOUNDATION = ("errors", "_version", "_records", "_validation", "_fail_spec", "_specs", "_paths", "_stats", "_threads", "_time_budget", "_progress", "_timings", "_storage",
              "_seeding", "_settings", "_session", "_devices", "_imports", "hookspec")
LAYERS: dict[str, int] = {
    **{name: 0 for name in FOUNDATION},
    "execution": 0,  # the executor seam: beside the foundation, so train and audits can submit units
    "data": 1, "augment": 2, "strategies": 2, "train": 3, "measure": 4, "sco": 4, "results": 5, "audits": 6,
    "report": 7, "_xdist": 8, "_replay": 8, "fixture": 8, "reproduce": 8, "cli": 9, "plugin": 10,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules and target != "pytest":
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


GRAPH = _graph()


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_room_has_a_layer() -> None:
    rooms = {_room(m) for m in GRAPH if m != ROOT}
    assert rooms <= set(LAYERS), f"rooms without a layer in this test (add them): {sorted(rooms - set(LAYERS))}"


def test_no_import_circles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v] & GRAPH.keys():
            if w == ROOT:
                continue
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
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []


def test_nothing_imports_the_plugin_module() -> None:
    importers = sorted(m for m, deps in GRAPH.items() if f"{ROOT}.plugin" in deps)
    assert importers == []


def test_imports_run_only_downward() -> None:
    upward = []
    for module, deps in GRAPH.items():
        if module == ROOT:
            continue
        layer = LAYERS[_room(module)]
        for dep in deps:
            if dep.startswith(f"{ROOT}.") and LAYERS.get(_room(dep), 99) > layer:
                upward.append(f"{module} -> {dep}")
    assert sorted(upward) == []


@pytest.mark.parametrize("room", ["data", "augment", "train", "measure", "results", "audits", "sco", "execution"])
def test_the_pipeline_does_not_import_pytest(room: str) -> None:
    users = sorted(m for m, deps in GRAPH.items() if _room(m) == room and "pytest" in deps)
    assert users == [], "measurement code must work in a notebook: no pytest below the plugin layer"


def test_the_package_root_imports_only_the_foundation() -> None:
    """`import pytest_psa` stays cheap: its module-level imports reach nothing with torch."""
    deps = {d for d in GRAPH[ROOT] if d.startswith(f"{ROOT}.")}
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    eager = set()
    for node in tree.body:  # module level only; the lazy map and TYPE_CHECKING block do not import
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(ROOT):
            eager.add(node.module)
    assert eager <= {f"{ROOT}.{name}" for name in FOUNDATION}, sorted(eager)
    assert deps  # the graph sees the TYPE_CHECKING imports, so the parse above is not vacuous


def test_the_execution_seam_imports_only_the_foundation_and_no_torch_or_ray_at_module_level() -> None:
    """`pytest_psa.execution` sits beside the foundation: what it imports at module level is the
    foundation and the standard library (ray only inside the Ray executor's functions)."""
    for path in sorted((PACKAGE / "execution").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top not in ("torch", "ray", "numpy"), f"{path.name} imports {name} at module level"
                if top == ROOT:
                    assert _room(name) in (*FOUNDATION, "execution"), f"{path.name} imports {name}"
