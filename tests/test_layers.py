"""The import direction of harness/ (docs/design.md, "Layers"): harness/ is one package per layer, and a module
imports only from its own package or the packages below it, imports inside functions included; no module imports
itself back through another (no import circle). A new module goes into one of the packages, or this test names
it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# harness/'s packages, bottom first: each may import its own and those below it (its docstring says which)
LAYERS = ["common", "networks", "setup", "records", "trackers", "training", "sweeps", "report"]


def module_name(path: Path) -> str:
    """harness/networks/models/cnn.py -> 'networks.models.cnn'; harness/__init__.py -> '' (the package: run,
    Config)."""
    parts = path.relative_to(ROOT / "harness").with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


MODULES = {module_name(p): p for p in (ROOT / "harness").rglob("*.py")}


def layer_of(module: str) -> int:
    """The position of the module's package in LAYERS; the top package (harness/__init__.py) sits above them all:
    it re-exports the public names, and nothing in the layers imports it."""
    return LAYERS.index(module.split(".")[0]) if module else len(LAYERS)


def imported(path: Path) -> set[str]:
    """The harness modules a file imports, anywhere in it ('from harness import flow' is harness.common.flow)."""
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


def test_every_module_is_in_a_layer_package():
    loose = [m for m in MODULES if m and m.split(".")[0] not in LAYERS]
    assert not loose, f"put these in one of harness/'s packages ({', '.join(LAYERS)}) and docs/design.md: {loose}"


def test_each_package_says_what_it_may_import():
    for i, name in enumerate(LAYERS[1:], start=1):
        doc = ast.get_docstring(ast.parse((ROOT / "harness" / name / "__init__.py").read_text())) or ""
        below = LAYERS[:i]
        assert "May import" in doc and all(b in doc for b in below), f"harness/{name}/__init__.py: name {below}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"harness.{m} imports harness.{t or '(the top package)'}"
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
