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
