"""Nothing lost, no way in, for the files themselves: damaged metrics and checkpoints are set aside and redone, and a
crafted CIFAR-10 batch cannot run code."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.records.results import CHECKPOINT, load_runs, write_checkpoint_file
from harness.setup.config import DataError
from harness.setup.data import load_cifar10
from harness.sweeps import sweep
from harness.training.train import run as train_run

# ---------------------------------------------------------------- 3. a damaged metrics.csv is not a finished run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_root):
    from tests.conftest import compose_config

    config = compose_config(
        "trainer.steps=10",
        "trainer.eval_every=5",
        "trainer.log_every=5",
        "trainer.progress=false",
        f"dataset.root={data_root}",
        "dataset.train_size=300",
        "trainer.device=cpu",
        "trainer.threads=1",
    )
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert train_run(config, run_dir)["status"] == "ok"
    return run_dir


def damage(run_dir: Path, how: str) -> None:
    path = run_dir / "metrics.csv"
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random bytes, same size":
        path.write_bytes(np.random.RandomState(0).bytes(len(data)))
    elif how == "one value changed":
        path.write_bytes(data.replace(b"\n10,test,acc,,0.", b"\n10,test,acc,,1.", 1))
    elif how == "garbage row appended":
        path.write_bytes(data + b"10,test,acc,,0.99,\n")
    elif how == "deleted":
        path.unlink()


@pytest.mark.parametrize(
    "how", ["truncated", "random bytes, same size", "one value changed", "garbage row appended", "deleted"]
)
def test_a_finished_run_with_a_damaged_metrics_csv_is_not_taken_as_finished(finished_run, tmp_path, how):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    assert sweep.job_state(run_dir)[0] == "ok" and sweep.finished_runs(tmp_path)
    before = (run_dir / "metrics.csv").read_bytes() if how != "deleted" else None
    damage(run_dir, how)
    assert before is None or (run_dir / "metrics.csv").read_bytes() != before
    state, note = sweep.job_state(run_dir)
    assert state == "corrupt" and "metrics.csv" in note["note"]
    assert sweep.finished_runs(tmp_path) == {}  # resume reruns it
    runs, metrics, skipped = load_runs(tmp_path)
    assert runs.empty and metrics.empty and "metrics.csv" in skipped.loc[0, "reason"]

    sweep.set_aside(run_dir)  # what the sweeper does before the rerun: nothing deleted
    assert not (run_dir / "summary.json").exists() and len(list(run_dir.glob("summary.json.corrupt-*"))) == 1
    assert len(list(run_dir.glob("metrics.csv.corrupt-*"))) == (how != "deleted")


def test_a_whole_run_loads_with_its_metrics(finished_run):
    runs, metrics, skipped = load_runs(finished_run)
    assert len(runs) == 1 and skipped.empty and set(metrics["step"]) >= {0, 5, 10}


# ---------------------------------------------------------------- 5. a damaged checkpoint is kept aside


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"PK\x03\x04 truncated zip"], ids=["empty", "zeros", "zip"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_over(tiny, tmp_path, caplog, content, finished_run):
    config = tiny("trainer.steps=10", "trainer.eval_every=5", "trainer.log_every=5", "trainer.checkpoint_every=5")
    plain = json.loads((finished_run / "summary.json").read_text())
    run_dir = tmp_path / "damaged"
    run_dir.mkdir()
    (run_dir / CHECKPOINT).write_bytes(content)
    with caplog.at_level(logging.WARNING):
        summary = train_run(config, run_dir)
    assert summary["status"] == "ok" and summary["test_acc"] == plain["test_acc"]  # started over, from step 0
    kept = list(run_dir.glob(f"{CHECKPOINT}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == content
    lines = [r.getMessage() for r in caplog.records if CHECKPOINT in r.getMessage()]
    assert len(lines) == 1 and "the job starts over" in lines[0] and "weights_only" not in lines[0]


def test_a_checkpoint_of_another_configuration_is_set_aside_too(tiny, tmp_path, caplog):
    blob = {
        "model": {},
        "optimizer": {},
        "scaler": {},
        "batches": {},
        "rng": torch.get_rng_state(),
        "cuda_rng": [],
        "state": {},
        "config_hash": "not-this-one",
    }
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_checkpoint_file(run_dir / CHECKPOINT, blob)  # whole, its checksum right: only its configuration is wrong
    with caplog.at_level(logging.WARNING):
        assert train_run(tiny("trainer.checkpoint_every=5"), run_dir)["status"] == "ok"
    assert len(list(run_dir.glob(f"{CHECKPOINT}.corrupt-*"))) == 1
    assert any("is of another configuration" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- 6. the CIFAR-10 reader runs no code


def write_cifar(root: Path, n: int = 4, protocol: int = 2) -> Path:
    """A tiny CIFAR-10 in the published layout: five training batches and a test batch of n images each."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "batch_label": f"{name} of 5",
            "labels": list(rng.randint(0, 10, n)),
            "data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
            "filenames": [b"x.png"] * n,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_batches_in_the_published_format_load(tmp_path, protocol):
    write_cifar(tmp_path, protocol=protocol)
    x_tr, y_tr, x_te, y_te = load_cifar10(tmp_path, download=False)
    assert x_tr.shape == (20, 3, 32, 32) and x_te.shape == (4, 3, 32, 32) and len(y_tr) == 20
    assert 0 <= x_tr.min() and x_tr.max() <= 1


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("download", [False, True])
def test_a_crafted_cifar10_batch_runs_no_code_and_gets_one_line(tmp_path, download):
    folder = write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": Payload(marker), "labels": []}, protocol=2))
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path, download=download)  # every file is there: nothing to download
    assert not marker.exists()
    assert "refusing to read" in str(info.value) and "os.system" not in str(info.value).split(":")[0]
    assert "\n" not in str(info.value)


def test_a_cifar10_batch_that_is_not_a_pickle_gets_one_line(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="is not a CIFAR-10 batch"):
        load_cifar10(tmp_path, download=False)
