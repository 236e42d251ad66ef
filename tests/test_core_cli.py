"""The command line: bad input gets one clear line and a non-zero exit before training; a good run prints a summary."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.config import ConfigError
from harness.train import check

ROOT = Path(__file__).resolve().parents[1]


def run_cli(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    """`python run.py OVERRIDES` with its run folder under tmp_path."""
    args = [sys.executable, str(ROOT / "run.py"), f"hydra.run.dir={tmp_path}/run", f"dataset.root={tmp_path}/data",
            "trainer.progress=false", *overrides]
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


def test_bad_value_exits_with_one_line_and_leaves_no_run_folder(tmp_path):
    result = run_cli(tmp_path, "trainer.lr=-1")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: trainer.lr must be > 0, got -1.0"
    assert not (tmp_path / "run").exists()


def test_wrong_type_gets_hydras_type_error(tmp_path):
    result = run_cli(tmp_path, "trainer.lr=abc")
    assert result.returncode != 0
    assert "trainer.lr" in result.stderr and "Traceback" not in result.stderr


def test_unknown_activation_lists_the_valid_names(tmp_path):
    result = run_cli(tmp_path, "activation=lrelu")
    assert result.returncode != 0
    assert "leaky_relu" in result.stderr and "Traceback" not in result.stderr


def test_a_run_prints_its_summary_and_writes_its_files(tmp_path):
    result = run_cli(tmp_path, "trainer.steps=30", "trainer.eval_every=15", "trainer.log_every=15",
                     "activation=leaky_relu", "model=cnn", "trainer.threads=1")
    assert result.returncode == 0, result.stderr
    assert "leaky_relu x cnn x mnist1d" in result.stdout and "hidden.2" in result.stdout
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "metrics.csv").exists()
