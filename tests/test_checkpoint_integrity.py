"""Checkpoints carry their checksum: one whose bytes changed after it was written (a flipped bit on disk, a bad copy)
or that predates the checksum is set aside and its job starts over, so a resume never finishes with numbers the
uninterrupted run would not give; `python -m harness.sweeps.status DIR` says so."""

from __future__ import annotations

import errno
import logging

import pytest
import torch

import harness.training.group as group
import harness.training.train as train
from harness.records.results import (
    CHECKPOINT,
    CHECKPOINT_HEADER_BYTES,
    CHECKPOINT_MAGIC,
    HashingWriter,
    load_checkpoint_file,
    read_checkpoint,
    write_checkpoint_file,
)
from harness.sweeps.status import status_report
from harness.sweeps.sweep import write_manifest

# Keys that differ between any two runs of one configuration: clocks, where and when it ran.
TIMING = {
    "train_time_s",
    "loop_time_s",
    "samples_per_s",
    "train_cpu_time_s",
    "clock_samples_per_s",
    "started_at",
    "finished_at",
    "run_dir",
    "pid",
    "group",
}


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so harness.run neither records it nor removes the checkpoint."""


@pytest.fixture(scope="module")
def clean(tmp_path_factory, data_root):
    """(config, the uninterrupted run's summary and metrics.csv, the checkpoint a killed run of it left at step 10)."""
    from tests.conftest import compose_config

    config = compose_config(
        "trainer.steps=20",
        "trainer.eval_every=10",
        "trainer.log_every=10",
        "trainer.checkpoint_every=10",
        "trainer.progress=false",
        f"dataset.root={data_root}",
        "dataset.train_size=300",
        "trainer.device=cpu",
        "trainer.threads=1",
    )
    root = tmp_path_factory.mktemp("clean")
    reference = train.run(config, root / "uninterrupted")
    assert reference["status"] == "ok", reference.get("error")
    real_save = group.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Killed

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        patch.setattr(group, "save_checkpoint", save_then_die)
        train.run(config, root / "killed")
    checkpoint = (root / "killed" / CHECKPOINT).read_bytes()
    return config, reference, (root / "uninterrupted" / "metrics.csv").read_bytes(), checkpoint


def flipped(data: bytes, at: int) -> bytes:
    """data with every bit of the byte at `at` flipped."""
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


# Where a byte can rot: offsets into the checkpoint file (header, then torch.save's zip archive).
POSITIONS = {
    "header magic": lambda data: 0,
    "header digest": lambda data: len(CHECKPOINT_MAGIC) + 17,
    "header newline": lambda data: CHECKPOINT_HEADER_BYTES - 1,
    "zip local header": lambda data: CHECKPOINT_HEADER_BYTES + 2,
    "a key of the pickled state": lambda data: data.index(b"best_val_acc"),
    "tensor data, a quarter in": lambda data: len(data) // 4,
    "tensor data, the middle": lambda data: len(data) // 2,
    "tensor data, three quarters in": lambda data: 3 * len(data) // 4,
    "zip central directory": lambda data: data.rindex(b"PK\x01\x02") + 16,  # the last entry's CRC-32
    "zip end of central directory": lambda data: len(data) - 6,
}


def resume(config, run_dir, checkpoint: bytes, caplog) -> tuple[dict, list[str]]:
    """Run config in a folder holding this checkpoint: (summary, the log lines about the checkpoint)."""
    run_dir.mkdir()
    (run_dir / CHECKPOINT).write_bytes(checkpoint)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        summary = train.run(config, run_dir)
    return summary, [r.getMessage() for r in caplog.records if CHECKPOINT in r.getMessage()]


def assert_as_uninterrupted(summary: dict, run_dir, reference: dict, metrics: bytes) -> None:
    assert summary["status"] == "ok", summary.get("error")
    assert {k: v for k, v in summary.items() if k not in TIMING} == {
        k: v for k, v in reference.items() if k not in TIMING
    }
    assert (run_dir / "metrics.csv").read_bytes() == metrics  # bit for bit, on one CPU thread


def assert_set_aside_and_started_over(run_dir, damaged: bytes, lines: list[str]) -> None:
    kept = list(run_dir.glob(f"{CHECKPOINT}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged  # kept for a look, never deleted
    assert len(lines) == 1 and "the job starts over" in lines[0] and kept[0].name in lines[0]


@pytest.mark.parametrize("where", list(POSITIONS))
def test_a_checkpoint_with_a_flipped_byte_is_set_aside_and_the_job_ends_as_the_clean_run(
    clean, tmp_path, caplog, where
):
    config, reference, metrics, checkpoint = clean
    damaged = flipped(checkpoint, POSITIONS[where](checkpoint))
    summary, lines = resume(config, tmp_path / "run", damaged, caplog)
    assert_as_uninterrupted(summary, tmp_path / "run", reference, metrics)
    assert_set_aside_and_started_over(tmp_path / "run", damaged, lines)


def test_an_intact_checkpoint_is_continued_from_and_ends_as_the_clean_run(clean, tmp_path, caplog):
    config, reference, metrics, checkpoint = clean
    summary, lines = resume(config, tmp_path / "run", checkpoint, caplog)
    assert_as_uninterrupted(summary, tmp_path / "run", reference, metrics)
    assert lines == [] and not list((tmp_path / "run").glob(f"{CHECKPOINT}.corrupt-*"))


def test_a_checkpoint_written_before_checksums_is_refused_in_one_line(clean, tmp_path, caplog):
    config, reference, metrics, checkpoint = clean
    old = checkpoint[CHECKPOINT_HEADER_BYTES:]  # torch.save's bytes alone: the format before the header
    summary, lines = resume(config, tmp_path / "run", old, caplog)
    assert_as_uninterrupted(summary, tmp_path / "run", reference, metrics)
    assert_set_aside_and_started_over(tmp_path / "run", old, lines)
    assert "no checksum header" in lines[0]


def test_a_cuda_checkpoint_from_before_cpu_drawn_batch_orders_is_set_aside_and_the_job_starts_over(
    clean, tmp_path, caplog
):
    """Batch orders are drawn on the CPU now (harness.setup.data.BatchIterator); a CUDA run's older checkpoint holds a
    CUDA generator's 16-byte state, which a CPU generator cannot take: one line, and the job starts over."""
    config, reference, metrics, checkpoint = clean
    blob = load_checkpoint_file(write_and_read(tmp_path, checkpoint))
    blob["batches"]["generator"] = torch.zeros(16, dtype=torch.uint8)  # what torch.cuda's generator saves
    write_checkpoint_file(tmp_path / "cuda.pt", blob)
    older = (tmp_path / "cuda.pt").read_bytes()
    summary, lines = resume(config, tmp_path / "run", older, caplog)
    assert_as_uninterrupted(summary, tmp_path / "run", reference, metrics)
    assert_set_aside_and_started_over(tmp_path / "run", older, lines)
    assert "drawn by a CUDA generator" in lines[0]


def write_and_read(tmp_path, checkpoint: bytes):
    path = tmp_path / "clean.pt"
    path.write_bytes(checkpoint)
    return path


@pytest.mark.slow
def test_a_byte_flipped_anywhere_never_gives_another_ok_run(clean, tmp_path, caplog):
    config, reference, metrics, checkpoint = clean
    for i, at in enumerate(range(0, len(checkpoint), len(checkpoint) // 64 + 1)):
        damaged = flipped(checkpoint, at)
        summary, lines = resume(config, tmp_path / str(i), damaged, caplog)
        assert_as_uninterrupted(summary, tmp_path / str(i), reference, metrics)
        assert_set_aside_and_started_over(tmp_path / str(i), damaged, lines)


def test_a_write_that_dies_midway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT
    blob = {
        "model": {},
        "optimizer": {},
        "scaler": {},
        "batches": {},
        "rng": None,
        "cuda_rng": [],
        "state": {"step": 10},
        "config_hash": "abc",
    }
    write_checkpoint_file(path, blob)
    before = path.read_bytes()
    written = []

    def disk_full_after_a_few_writes(self, data):
        written.append(len(data))
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    monkeypatch.setattr(HashingWriter, "write", disk_full_after_a_few_writes)
    with pytest.raises((OSError, RuntimeError)):  # torch reraises it as a RuntimeError
        write_checkpoint_file(path, {**blob, "state": {"step": 20}})
    assert path.read_bytes() == before and load_checkpoint_file(path)["state"] == {"step": 10}
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no half-written temporary file either


def test_the_sweep_status_names_a_damaged_checkpoint_and_the_one_set_aside(clean, tmp_path):
    checkpoint = clean[3]
    sweep_dir, job = tmp_path / "sweep", tmp_path / "sweep" / "job"
    job.mkdir(parents=True)
    write_manifest(sweep_dir, [{"dir": "job", "overrides": [], "config_hash": "x"}], "run.py -m")
    (job / CHECKPOINT).write_bytes(checkpoint)
    assert "resume continues from its checkpoint" in status_report(sweep_dir)

    (job / CHECKPOINT).write_bytes(flipped(checkpoint, len(checkpoint) // 2))
    report = status_report(sweep_dir)
    assert f"its {CHECKPOINT} fails its checksum" in report and "resume sets it aside and starts over" in report

    assert read_checkpoint(job / CHECKPOINT, "x") is None  # what the resume does; then it stopped again
    (job / CHECKPOINT).write_bytes(checkpoint)
    aside = next(job.glob(f"{CHECKPOINT}.corrupt-*")).name
    report = status_report(sweep_dir)
    assert "resume continues from its checkpoint" in report and f"{aside} set aside" in report


def test_a_checkpoint_written_before_harness_became_packages_is_continued_from(clean, tmp_path, caplog, monkeypatch):
    """tests/golden/checkpoint_before_packages: the killed run above, written by the code of before harness/'s
    modules moved into packages (a checkpoint holds tensors and plain values, never a module's path). It is continued
    from, not set aside; its numbers are this CPU's kind's only where it was written, so they are held to the clean
    run's within float32 rounding grown over ten steps, and bit for bit on the first ten."""
    from pathlib import Path

    config, reference, metrics, _ = clean
    written = (Path(__file__).parent / "golden" / "checkpoint_before_packages" / CHECKPOINT).read_bytes()
    restored_at, real_load = [], group.load_checkpoint

    def load(*args):
        loaded = real_load(*args)
        restored_at.append(loaded and loaded[1].step)
        return loaded

    monkeypatch.setattr(group, "load_checkpoint", load)
    summary, lines = resume(config, tmp_path / "run", written, caplog)
    assert summary["status"] == "ok", summary.get("error")
    assert restored_at == [10]  # continued from step 10, not started over
    assert lines == [] and not list((tmp_path / "run").glob(f"{CHECKPOINT}.corrupt-*"))
    assert summary["steps"] == reference["steps"]
    assert summary["test_acc"] == pytest.approx(reference["test_acc"], abs=0.02)
    assert summary["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-3)
