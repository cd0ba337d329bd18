"""The package's imports go one way (README "Layout"): every import, at module level or inside a function,
points to the same layer or a lower one, and no modules import each other in a circle. Read with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import klip_lib

PACKAGE = Path(klip_lib.__file__).resolve().parent

# lowest first; a module's layer is that of its first name below klip_lib
LAYERS: list[tuple[str, ...]] = [
    ("paths", "vocab", "presets", "dist", "files", "determinism", "viz", "vendor", "errors", "weights",
     "evidence"),  # base
    ("data",),  # simulator, GeoTIFF I/O, index, datasets
    ("knowledge",),  # facts of real tiles: offline geography, sensor metadata, classical SAR methods
    ("hcot",),  # knowledge chain and captions
    ("attention", "encoders", "losses", "model_config", "model"),  # the model
    ("train", "train_bench"),  # pretraining
    ("scio",),  # SCIO
    ("tasks", "scio_inject", "scio_effect"),  # evaluation (the SCIO harness and its downstream arms)
    ("report", "environment", "maps", "map_explorer", "offline", "ledger", "task_pages"),  # reports, maps, checks
    ("artifacts",),  # orchestration: the cached steps
    ("runner", "cli", "bench", "scio_bench", "scio_effect_bench", "study_bench"),  # commands
]


def module_name(path: Path) -> str:
    parts = ["klip_lib", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its code (packages' re-exports included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                target = ".".join(base[:len(base) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module or ""
                for t in [target, *(f"{target}.{a.name}" for a in node.names)]:
                    if t in modules and t != "klip_lib":
                        found.add(t)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules and a.name != "klip_lib"}
        graph[name] = found - {name}
    return graph


def layer(module: str) -> int:
    first = module.split(".")[1] if "." in module else ""
    return next(i for i, names in enumerate(LAYERS) if first in names)


def test_every_module_has_a_layer():
    unplaced = [m for m in import_graph() if m != "klip_lib" and not any(
        m.split(".")[1] in names for names in LAYERS)]
    assert not unplaced, f"modules without a layer in LAYERS: {unplaced}"


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() if a != "klip_lib" for b in targets
                  if layer(b) > layer(a))


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, str] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_imports_point_down_or_sideways():
    upward = upward_edges(import_graph())
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_names_imported_across_modules():
    private = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("klip_lib")):
                private += [f"{module_name(path)}: {node.module} {a.name}" for a in node.names
                            if a.name.startswith("_")]
    assert not private, "private names imported from another module:\n" + "\n".join(private)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = import_graph()
    assert "klip_lib.train" in graph["klip_lib.artifacts"]  # imports inside functions are read too
    bad = {"klip_lib.train": {"klip_lib.scio.rounds"}, "klip_lib.scio.rounds": {"klip_lib.train"}}
    assert upward_edges(bad) == ["klip_lib.train -> klip_lib.scio.rounds"]
    assert find_cycles(bad) == ["klip_lib.scio.rounds -> klip_lib.train -> klip_lib.scio.rounds"]
