"""The package's layering, checked from the source: lower layers never import upper ones (at
module level or inside a function), no import cycles between modules, and the pure evaluation
package imports no model code."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medklip"
LAYERS = {
    0: {"errors", "labels", "splits", "io_utils", "progress", "config_utils", "extras", "__init__"},
    1: {"knowledge", "text", "reports"},
    2: {"models", "data"},
    3: {"train", "evaluation", "zeroshot", "finetune", "demo"},
    4: {"app", "cli", "__main__"},
}
LAYER_OF = {name: level for level, names in LAYERS.items() for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported medklip module, at module level?)`` for every import in the file."""
    tree = ast.parse(path.read_text())
    found = []
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("medklip") and name != "medklip":
                found.append((name, id(node) in top))
    return found


def files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def layer(module: str) -> int:
    """The layer of a module; a name imported from the package itself (``from medklip import
    __version__``) is the package's ``__init__``."""
    part = module.split(".")[1] if "." in module else "__init__"
    return LAYER_OF.get(part, 0) if part not in TOP_LEVEL else LAYER_OF[part]


TOP_LEVEL = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")}


def test_every_package_has_a_layer() -> None:
    tops = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in files()}
    assert tops <= set(LAYER_OF), sorted(tops - set(LAYER_OF))


def test_lower_layers_never_import_upper_ones() -> None:
    wrong = []
    for path in files():
        here = module_name(path)
        if here == "medklip":
            continue  # the package's lazy top-level names
        for name, _ in imports(path):
            if layer(name) > layer(here):
                wrong.append(f"{here} (layer {layer(here)}) imports {name} (layer {layer(name)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_modules() -> None:
    known = {module_name(p) for p in files()}
    graph: dict[str, set[str]] = {}
    for path in files():
        here = module_name(path)
        deps = set()
        for name, _ in imports(path):
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known and name != here and not here.startswith(name + "."):
                deps.add(name)
        graph[here] = deps
    if "medklip" in graph:
        graph["medklip"] = set()  # lazy re-exports only
    for package in [m for m in graph if any(k.startswith(m + ".") for k in graph)]:
        graph[package] = {d for d in graph[package] if not d.startswith(package + ".")} | {
            d for d in graph[package] if d.startswith(package + ".")}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    cycles = [c for c in cycles if not _package_init_edge(c)]
    assert not cycles, "\n".join(cycles)


def _package_init_edge(cycle: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules is not a cycle of the code."""
    nodes = cycle.split(" -> ")
    return all(b.startswith(a + ".") or a.startswith(b + ".") or a.rsplit(".", 1)[0] == b.rsplit(".", 1)[0]
               for a, b in zip(nodes, nodes[1:])) and len({n.split(".")[1] for n in nodes if "." in n}) == 1


@pytest.mark.parametrize("package,forbidden", [
    ("medklip.evaluation", ("medklip.models", "medklip.zeroshot", "torch")),
    ("medklip.knowledge", ("torch",)),
    ("medklip.reports", ("torch",)),
    ("medklip.cli", ("torch",)),
])
def test_light_packages_import_no_heavy_code(package: str, forbidden: tuple[str, ...]) -> None:
    code = (f"import sys, {package}; print(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r} "
            f"or m.startswith({forbidden!r}))[:5])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
