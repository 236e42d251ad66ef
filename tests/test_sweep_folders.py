"""A sweep folder is used as the user typed it (backslashes, spaces, brackets, quotes, unicode): the jobs' results,
sweep.json and the printed resume command all name that folder, and the resume command runs back exactly."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.harness_sweeper._folders import quoted_override, resume_command
from tests.conftest import CONF_DIR
from tests.test_symlinks import TINY, sweep_here

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["a\\b", "ends\\", "two\\\\", "it's", "quote\\'d", "x y [1,2] {k: v} (3)", "日本/é", "\\'", "a\\\\'\\"]


def parsed(override: str) -> str:
    return OverridesParser.create().parse_override(override).value()


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_pinned_folder_override_is_read_back_by_hydra_as_the_folder(folder):
    assert parsed(quoted_override("hydra.sweep.dir", folder)) == folder


@pytest.mark.parametrize("folder", FOLDERS + ["/plain/path_1.2-x"])
def test_the_printed_resume_command_runs_back_the_same_folder(monkeypatch, folder):
    monkeypatch.setattr(sys, "argv", ["run.py", "-m", "seed=0,1", f"hydra.sweep.dir={folder}", "resume=true"])
    argv = shlex.split(resume_command("/tmp/" + folder))  # what the shell hands run.py
    assert argv[:4] == ["python", "run.py", "-m", "seed=0,1"] and argv[4] == "resume=true"
    assert parsed(argv[5]) == "/tmp/" + folder and len(argv) == 6


def sweep_files(top: Path) -> list[str]:
    """Every file under top but Hydra's, as paths relative to it."""
    return sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file() and ".hydra" not in p.parts)


def test_a_sweep_in_a_backslash_folder_writes_there_and_its_resume_command_resumes_it(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, text = sweep_here(capsys, "seed=0,1", *TINY, "hydra.sweep.dir=a\\b")  # as typed: hydra.sweep.dir='a\b'
    assert code == 0, text[-2000:]
    assert os.listdir(tmp_path) == ["a\\b"]  # not a\\b beside it
    files = sweep_files(tmp_path / "a\\b")
    assert "sweep.json" in files and sum(f.endswith("/summary.json") for f in files) == 2, files
    line = next(x for x in text.splitlines() if x.startswith("resume:"))
    args = shlex.split(line.removeprefix("resume:"))[2:]
    assert parsed(args[-1]) == f"{tmp_path}/a\\b"
    code, text = sweep_here(capsys, *[a for a in args if a not in ("-m", "--config-path", CONF_DIR)])
    assert code == 0 and "2 finished earlier (skipped), 0 to run" in text, text[-2000:]
    assert os.listdir(tmp_path) == ["a\\b"] and sweep_files(tmp_path / "a\\b") == files


@pytest.mark.slow
def test_as_typed_in_a_shell_a_sweep_and_its_printed_resume_command_use_one_folder(tmp_path):
    """The in-process test above, as a user runs it: python run.py, then the printed command through bash."""
    folder = "a\\b [1] é's"
    typed = f"hydra.sweep.dir='{folder}'".replace("'s'", "\\'s'")
    run_py = [sys.executable, str(ROOT / "run.py"), "-m", "seed=0,1", *TINY, typed]
    first = subprocess.run(run_py, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert os.listdir(tmp_path) == [folder] and "sweep.json" in os.listdir(tmp_path / folder)
    line = next(x for x in first.stdout.splitlines() if x.startswith("resume:")).removeprefix("resume:").strip()
    again = subprocess.run(
        ["bash", "-c", line.replace("python", shlex.quote(sys.executable), 1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "2 finished earlier (skipped), 0 to run" in again.stdout, again.stderr[-2000:]
    assert os.listdir(tmp_path) == [folder]
