"""The commands an install gives (pyproject.toml [project.scripts]): each resolves, answers --help with its usage
and exit 0, and no file of the project puts itself on sys.path by hand."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_command_has_the_one_prefix_and_the_documented_ones_are_there():
    assert all(name.startswith("harness-") for name in COMMANDS)
    assert {
        "harness-report",
        "harness-status",
        "harness-study-report",
        "harness-gallery",
        "harness-bench-overhead",
        "harness-bench-grouped",
        "harness-microbench",
    } <= COMMANDS.keys()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_answers_help(name, monkeypatch, capsys):
    module, function = COMMANDS[name].split(":")
    main = getattr(importlib.import_module(module), function)
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    try:
        code = main()  # the console script exits with what main returns, or main exits itself (argparse)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.startswith(f"usage: {name}") and out.err == ""


def test_no_file_adds_to_sys_path_by_hand():
    sources = [
        p
        for folder in ("harness", "hydra_plugins", "scripts", "experiments", "tests")
        for p in (ROOT / folder).rglob("*.py")
    ] + [ROOT / "run.py"]
    offenders = [
        str(p.relative_to(ROOT))
        for p in sources
        if p != Path(__file__) and re.search(r"sys\.path\.(insert|append)", p.read_text())
    ]
    assert offenders == []


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "experiments").glob("*.md"))]


def documented(pattern: str) -> set[str]:
    return {m for doc in DOCS for m in re.findall(pattern, doc.read_text())}


def resolves(dotted: str) -> bool:
    """harness.sweeps.status, harness.setup.batches.MemberBatches, harness.run: a module, or a name in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name, None)
        return found is not None
    return False


def test_every_module_and_name_the_docs_give_exists():
    """A module moved (harness/ became one package per layer) takes its docs with it: every harness.X the README,
    docs/ and the write-ups name is importable, and every harness/X path they name is a file or folder."""
    names = documented(r"`[^`]*?\b(harness(?:\.\w+)+)")
    assert names and not [n for n in sorted(names) if not resolves(n.rstrip("."))]
    paths = documented(r"(?<![\w/.])(harness/[\w/]*\w(?:\.py)?)")
    assert paths and not [p for p in sorted(paths) if not (ROOT / p).exists()]


def test_every_documented_python_dash_m_is_a_module_with_a_main():
    modules = documented(r"python -m (harness(?:\.\w+)+)")
    assert "harness.sweeps.status" in modules
    assert not [m for m in modules if not hasattr(importlib.import_module(m), "main")]
