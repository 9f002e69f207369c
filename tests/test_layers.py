"""The layering of shared/ARCHITECTURE.md, read from the imports with ast (nothing is
imported): model code never imports train, eval or the writers; data code never imports a
model; writers never import models, train or eval; and no module imports itself through
others (no import cycle), lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "voxmesh"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The voxmesh modules ``name`` imports (anywhere in the file), resolved to modules."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]) if node.level else node.module
            base = (base or "").strip(".")
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            # a module importing its own package (its __init__) is not a cycle
            if candidate and candidate != name and not name.startswith(candidate + "."):
                found.add(candidate)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}

# layer -> layers it must never import
FORBIDDEN = {
    "voxmesh.models": ("voxmesh.train", "voxmesh.eval", "voxmesh.render", "voxmesh.cli", "voxmesh.animate",
                       "voxmesh.benchmark", "voxmesh.inference", "voxmesh.demo"),
    "voxmesh.data": ("voxmesh.models", "voxmesh.train", "voxmesh.eval", "voxmesh.animate", "voxmesh.benchmark"),
    "voxmesh.render": ("voxmesh.models", "voxmesh.train", "voxmesh.eval", "voxmesh.animate", "voxmesh.benchmark"),
    "voxmesh.audio": ("voxmesh.models", "voxmesh.train", "voxmesh.eval", "voxmesh.data", "voxmesh.render"),
    "voxmesh.mesh": ("voxmesh.models", "voxmesh.train", "voxmesh.eval", "voxmesh.data", "voxmesh.render"),
    "voxmesh.pipeline": ("voxmesh.cli", "voxmesh.animate", "voxmesh.benchmark", "voxmesh.render", "voxmesh.demo"),
    "voxmesh.inference": ("voxmesh.train", "voxmesh.eval", "voxmesh.pipeline", "voxmesh.animate", "voxmesh.cli"),
    "voxmesh.files": ("voxmesh.",),  # the bottom: only voxmesh.errors
    "voxmesh.extras": ("voxmesh.",),
}


def inside(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".") or (layer.endswith(".") and module.startswith(layer))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_one_above_it(layer):
    broken = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if inside(module, layer)
                    for target in targets for above in FORBIDDEN[layer] if inside(target, above)
                    and target != "voxmesh.errors")
    assert not broken, broken


def test_no_import_cycles():
    """Tarjan's strongly connected components of the module graph: none larger than one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, cycles
