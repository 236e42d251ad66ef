"""The import direction of harness/ (docs/design.md, "Layers"): a module imports only from its own layer or the
layers below it, imports inside functions included; and no module imports itself back through another (no
import circle). A new module goes into LAYERS, or this test names it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"models", "models.base", "models.mlp", "models.cnn", "models.rnn", "models.transformer", "models.weights"}
LAYERS = [  # bottom first
    ("foundation", {"errors", "text", "outputs", "metrics", "safe_pickle", "flow"}),
    ("networks", {"gated", "activations", *MODELS, "stacked_layers", "stacked", "probes", "stacked_probes"}),
    ("configuration and data", {"config", "optimizers", "datafiles", "data", "footprint", "resolve"}),
    ("records", {"records", "upgrade", "results", "recorder", "migrate"}),
    ("run core", {"", "meters", "capture", "stacked_optim", "loop", "group", "born_dead", "train", "bench", "console"}),
    ("sweeps", {"joblock", "jobtable", "sweep", "status"}),
    ("report", {"report"}),  # harness.report and every module in it
]


def module_name(path: Path) -> str:
    """harness/models/cnn.py -> 'models.cnn'; harness/__init__.py -> '' (the package: run, Config)."""
    parts = path.relative_to(ROOT / "harness").with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


MODULES = {module_name(p): p for p in (ROOT / "harness").rglob("*.py")}


def layer_of(module: str) -> int:
    top = "report" if module.split(".")[0] == "report" else module
    return next(i for i, (_, names) in enumerate(LAYERS) if top in names)


def imported(path: Path) -> set[str]:
    """The harness modules a file imports, anywhere in it ('from harness import flow' is harness.flow)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from harness.report import stats` imports the module report.stats; `from harness import run`, a
            # name, imports the package itself
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [n for n in subs if n.removeprefix("harness.") in MODULES]
            names += [node.module] if len(names) < len(subs) else []
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.removeprefix("harness").removeprefix(".") for n in names if n.split(".")[0] == "harness"}
    return {n for n in found if n in MODULES}


def test_every_module_has_a_layer():
    unplaced = [m or "harness" for m in MODULES if m.split(".")[0] != "report" and not any(m in n for _, n in LAYERS)]
    assert not unplaced, f"put these in LAYERS (and docs/design.md): {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{m or 'harness'} ({LAYERS[layer_of(m)][0]}) imports {t or 'harness'} ({LAYERS[layer_of(t)][0]})"
        for m, path in MODULES.items()
        for t in imported(path)
        if layer_of(t) > layer_of(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    graph = {m: imported(p) - {m} for m, p in MODULES.items()}
    graph[""] = set()  # the package re-exports the public names: everything may name `harness` for them
    for m in graph:
        graph[m].discard("")
    circles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == path[0]:
                circles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and len(path) < 12:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not circles, circles[:5]
