"""The command line: bad input gets one clear line and a non-zero exit before training; a good run prints a summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.setup.config import ConfigError
from harness.training.train import check
from tests.conftest import run_py_in_process

ROOT = Path(__file__).resolve().parents[1]


def run_cli(tmp_path, data_root, *overrides: str) -> subprocess.CompletedProcess:
    """`python run.py OVERRIDES` with its run folder under tmp_path."""
    args = [
        sys.executable,
        str(ROOT / "run.py"),
        f"hydra.run.dir={tmp_path}/run",
        f"dataset.root={data_root}",
        "trainer.progress=false",
        *overrides,
    ]
    return subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.lr=-1", "trainer.lr must be > 0"),
        ("trainer.batch_size=0", "trainer.batch_size must be > 0"),
        ("model.depth=-1", "model.depth must be >= 0"),
        ("+activation.slope=0.2", "has no parameter slope"),
        ("trainer.optimizer=lbfgs", "trainer.optimizer='lbfgs' is not valid"),
        ("model.init=he", "model.init='he' is not valid"),
        ("dataset=spirals model=cnn", "model=cnn cannot take dataset=spirals"),
        ("dataset.val_fraction=1.5", "dataset.val_fraction must be in (0, 1)"),
        ("trainer.threads=0", "trainer.threads must be auto, a count > 0 or null, got 0"),
        ("trainer.threads=many", "trainer.threads must be auto, a count > 0 or null, got 'many'"),
        ("trainer.threads=1.5", "trainer.threads must be auto, a count > 0 or null, got 1.5"),
    ],
)
def test_invalid_values_are_refused_before_training(tiny, override, message):
    with pytest.raises(ConfigError) as info:
        check(tiny(*override.split()))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_refused(tiny):
    with pytest.raises(ConfigError, match="no CUDA GPU is available"):
        check(tiny("trainer.device=cuda"))


def main_in_process(tmp_path, data_root, monkeypatch, capsys, *overrides: str) -> tuple[int, str, str]:
    """`python run.py OVERRIDES` as run.cli (preflight, then Hydra) with a patched argv: exit status, stdout, stderr."""
    monkeypatch.chdir(tmp_path)
    code = run_py_in_process(
        f"hydra.run.dir={tmp_path}/run", f"dataset.root={data_root}", "trainer.progress=false", *overrides
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# Each check runs in process (fast) and, marked slow, as a real subprocess (what a user types).
@pytest.fixture(params=["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
def cli(request, tmp_path, data_root, monkeypatch, capsys):
    def call(*overrides: str) -> tuple[int, str, str]:
        if request.param == "subprocess":
            result = run_cli(tmp_path, data_root, *overrides)
            return result.returncode, result.stdout, result.stderr
        return main_in_process(tmp_path, data_root, monkeypatch, capsys, *overrides)

    return call


def test_bad_value_exits_with_one_line_and_leaves_no_run_folder(cli, tmp_path):
    code, _, err = cli("trainer.lr=-1")
    assert code == 2
    assert err.strip() == "error: trainer.lr must be > 0, got -1.0"
    assert not (tmp_path / "run").exists()


def test_wrong_type_is_one_line_naming_the_key(cli, tmp_path):
    code, _, err = cli("trainer.lr=abc")
    assert code == 2
    assert err.startswith("error:") and err.strip().count("\n") == 0
    assert "trainer.lr=abc" in err and "Float" in err
    assert not (tmp_path / "run").exists()


def test_unknown_activation_lists_the_valid_names(cli):
    code, _, err = cli("activation=lrelu")
    assert code == 2
    assert err.startswith("error:") and err.strip().count("\n") == 0
    assert "lrelu" in err and "leaky_relu" in err and "swiglu" in err


def test_a_run_prints_its_summary_and_writes_its_files(cli, tmp_path):
    code, out, err = cli(
        "trainer.steps=30",
        "trainer.eval_every=15",
        "trainer.log_every=15",
        "activation=leaky_relu",
        "model=cnn",
        "trainer.threads=1",
        "dataset.train_size=300",
    )
    assert code == 0, err
    assert "leaky_relu x cnn x mnist1d" in out and "hidden.2" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["activation"], summary["model"], summary["steps"]) == (
        "ok",
        "leaky_relu",
        "cnn",
        30,
    )
    assert f"test accuracy {summary['test_acc_at_best_val']:.4f} (at the evaluation with the best" in out
    assert f"at the last step (30): test accuracy {summary['test_acc']:.4f}" in out  # the recorded numbers
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert sorted(metrics.query("split == 'val' and metric == 'acc'").step) == [15, 30]
