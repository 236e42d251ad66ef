"""Write one run's records atomically; load any folder of runs into pandas DataFrames."""

from __future__ import annotations

import csv
import datetime
import functools
import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from harness.common.outputs import refuse_symlink
from harness.records.schema import SCHEMA_VERSION, finite_or_none, read_summary_file  # noqa: F401  writers import them here
from harness.setup.config import Config, config_hash, to_dict

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from harness.setup.resolve import Resolved

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"  # a job's resumable state (harness/records/recorder.py writes it)
METRIC_COLUMNS = ["step", "split", "metric", "layer", "value", "t"]
RECORDED = (METRICS,)  # files whose size and checksum summary.json records: a damaged one is told from a whole one
PACKAGES = ("torch", "torchvision", "hydra-core", "omegaconf", "numpy", "pandas", "mnist1d", "scikit-learn")


log = logging.getLogger(__name__)
UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it), and put back at once
os.umask(UMASK)


def atomic_write(path: Path, write: Callable[[IO[Any]], object], binary: bool = False) -> None:
    """Write through a temporary file in the same folder, then os.replace: readers never see half a file. write(f)
    writes it to f, a text file (newline="": as written), or a binary one when binary.

    The temporary name is unique (.NAME.XXXX.tmp): two writers never share one, and a killed one's is recognisable.
    A path that is a symlink is refused (harness.common.outputs.SymlinkRefused): os.replace would replace the link, and
    a plain open would write through it; neither is what the user asked for.
    """
    path = Path(path)
    refuse_symlink(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="") as f:
            os.fchmod(f.fileno(), 0o666 & ~UMASK)  # as open() would make it, not mkstemp's owner-only 0600
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_record(path: Path) -> dict:
    """Size and sha256 of a file, as summary.json records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def damaged_file(run_dir: Path, summary: dict) -> tuple[str, str] | None:
    """(name, what is wrong) of the first recorded file that is missing or differs from its record in summary.json;
    None if all match. Summaries written before files were recorded have no record: they are taken as they are."""
    for name, record in (summary.get("files") or {}).items():
        path = Path(run_dir) / name
        if not path.is_file():
            return name, "missing"
        if path.stat().st_size != record.get("bytes") or file_record(path) != record:
            return name, f"its size or checksum differs from the one in {SUMMARY}"
    return None


def now() -> str:
    """A summary's timestamps: local time with its offset, to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def new_summary(
    config: Config, run_dir: Path, overrides: Iterable[str], group: dict | None = None, resolved: Resolved | None = None
) -> dict:
    """The one summary every run starts from (a single run, a group's member, a job that failed before training):
    who it is, status failed until its end says otherwise. resolved (harness.setup.resolve) names the activation as
    built and the initialisation used; a job that failed before it records the configured ones. group: the member's
    place in its group; a run that trains alone is a group of one named by its folder."""
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "failed",
        "activation": resolved.activation.name if resolved else config.activation["name"],
        "model": config.model.name,
        "dataset": config.dataset.name,
        "seed": config.seed,
        "config_hash": config_hash(config),
        "overrides": list(overrides),
        "config": to_dict(config),
        "init_used": resolved.init if resolved else None,
        "run_dir": str(run_dir),
        "started_at": now(),
        "group": group or {"id": Path(run_dir).name, "size": 1, "index": 0},
    }


def write_summary(run_dir: Path, summary: dict) -> None:
    """Write summary.json atomically; it is the last file a run writes, and its presence means finished.

    It records the size and checksum of the run's other files (summary["files"]), so a damaged one is caught.
    """
    paths = [Path(run_dir) / name for name in RECORDED]
    summary["files"] = {path.name: file_record(path) for path in paths if path.is_file()}
    text = json.dumps(finite_or_none(summary), indent=2, allow_nan=False)
    atomic_write(Path(run_dir) / SUMMARY, lambda f: f.write(text + "\n"))


def write_record(run_dir: Path, summary: dict) -> None:
    """A run's end: its summary.json, in its folder (made again if it was deleted meanwhile); a finished run's
    checkpoint goes, a failed one keeps its last good one to resume from. Raises OSError when it cannot write."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_summary(run_dir, summary)
    if summary["status"] != "failed":
        (Path(run_dir) / CHECKPOINT).unlink(missing_ok=True)


def write_metrics(run_dir: Path, rows: list[tuple]) -> None:
    """Write metrics.csv (long form: step, split, metric, layer, value, t) atomically."""

    def write(f: IO[str]) -> None:
        writer = csv.writer(f)
        writer.writerow(METRIC_COLUMNS)
        for step, split, metric, layer, value, t in rows:
            writer.writerow(
                [step, split, metric, layer or "", "" if value is None else repr(float(value)), "" if t is None else t]
            )

    atomic_write(Path(run_dir) / METRICS, write)


def read_summary(run_dir: Path) -> dict:
    """A run's summary.json, checked by the validated reader (harness.records.schema); raises
    harness.records.schema.Unreadable (a ValueError, one line) on a missing, truncated, corrupt or hand-edited file."""
    return read_summary_file(Path(run_dir) / SUMMARY)


def set_aside_file(path: Path, why: str = "corrupt") -> Path:
    """Rename a damaged file to NAME.corrupt-STAMP next to it: kept for a look, out of the way of a rerun."""
    path = Path(path)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    os.replace(path, target)
    return target


CHECKPOINT_KEYS = {"model", "optimizer", "scaler", "batches", "rng", "cuda_rng", "state", "config_hash"}
# A checkpoint file is this header (with the hex sha256 of what follows), a newline, then torch.save's bytes: the
# checksum travels in the same file, written by one atomic_write, so a kill never leaves the two disagreeing.
CHECKPOINT_MAGIC = b"harness-checkpoint sha256="
CHECKPOINT_HEADER_BYTES = len(CHECKPOINT_MAGIC) + 64 + 1


class HashingWriter:
    """A file for torch.save that hashes what passes through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha256 = f, hashlib.sha256()

    def write(self, data: ReadableBuffer) -> int:  # torch.save hands it memoryviews
        self.sha256.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def write_checkpoint_file(path: Path, blob: dict) -> None:
    """torch.save(blob) behind its checksum header, atomically: a kill leaves the old file or the new one."""
    import torch

    def write(f: IO[bytes]) -> None:
        f.write(b"\0" * CHECKPOINT_HEADER_BYTES)  # its place; the digest is known once the payload is written
        payload = HashingWriter(f)
        torch.save(blob, payload)  # type: ignore[arg-type]  # torch's stub wants IO[bytes]; save calls write only
        f.seek(0)
        f.write(CHECKPOINT_MAGIC + payload.sha256.hexdigest().encode() + b"\n")

    atomic_write(path, write, binary=True)


def checkpoint_payload(data: bytes) -> memoryview:
    """The torch.save bytes of a checkpoint file's contents; ValueError (saying what is wrong) unless its header
    is there and its checksum matches."""
    header, payload = data[:CHECKPOINT_HEADER_BYTES], memoryview(data)[CHECKPOINT_HEADER_BYTES:]
    if not header.startswith(CHECKPOINT_MAGIC) or not header.endswith(b"\n"):
        raise ValueError("has no checksum header (written before checkpoints carried one, or its start is damaged)")
    if header[len(CHECKPOINT_MAGIC) : -1] != hashlib.sha256(payload).hexdigest().encode():
        raise ValueError("fails its checksum (its bytes changed after it was written)")
    return payload


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with a checkpoint file (see checkpoint_payload), None if its checksum holds; no torch needed."""
    try:
        checkpoint_payload(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        return str(exc)
    return None


def load_checkpoint_file(path: Path) -> dict:
    """A checkpoint file's contents, checked (weights_only: no code runs on load); raises when it cannot be used."""
    import io

    import torch

    payload = checkpoint_payload(Path(path).read_bytes())
    try:
        blob = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds here; its message would even suggest weights_only=False
        raise ValueError(f"is damaged ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or not CHECKPOINT_KEYS <= blob.keys():
        raise ValueError("is damaged (not a harness checkpoint)")
    return blob


def read_checkpoint(path: Path, expected_hash: str) -> dict | None:
    """A checkpoint's contents, or None when it cannot be used.

    A checkpoint without its checksum header, failing its checksum, damaged otherwise, or of another configuration
    is set aside (never deleted) with one line in the log, and the job starts over.
    """
    try:
        blob = load_checkpoint_file(path)
    except (OSError, ValueError) as exc:
        reason = str(exc)
    else:
        if blob["config_hash"] == expected_hash:
            return blob
        reason = "is of another configuration"
    set_aside_checkpoint(path, reason)
    return None


def set_aside_checkpoint(path: Path, reason: str) -> None:
    """Move a checkpoint that cannot be used out of the way (never deleted), with one line in the job's log."""
    aside = set_aside_file(path)
    log.warning(f"{path.name} {reason}: moved to {aside.name}; the job starts over")


# Provenance is read once per process (a group's members, a basic launcher's jobs share it): a process runs the code
# and packages it imported, so what the tree or site-packages hold later is not what ran.
@functools.cache
def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a result."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.cache
def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit sha, whether the work tree has uncommitted changes) of the code, or (None, None) outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if sha.returncode != 0:
        return None, None
    return sha.stdout.strip(), bool(dirty.stdout.strip())


def find_run_dirs(path: Path) -> list[Path]:
    """Every run directory under path (a folder holding a Hydra .hydra/ or a summary.json), path itself included."""
    path = Path(path)
    found = {p.parent for p in path.rglob(SUMMARY)} | {p.parent for p in path.rglob(".hydra") if p.is_dir()}
    return sorted(d for d in found if not any(part.startswith(".") for part in d.relative_to(path.parent).parts))


def flatten(prefix: str, value: object, out: dict[str, object]) -> None:
    """Nested dicts to dotted columns: {'model': {'depth': 2}} -> {'model.depth': 2}."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value


def load_runs(*paths: Path, with_metrics: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Load every run under the paths: (runs, metrics, skipped).

    runs: one row per finished run (summary keys and config choices as dotted columns, `run_dir`).
    metrics: the long metrics tables of those runs, with `run_dir`.
    skipped: run directories that could not be used (unfinished, corrupt), with the reason.
    Failed runs are rows in `runs` with status 'failed'; callers decide what to do with them.
    """
    rows, metrics, skipped = [], [], []
    for path in paths:
        for run_dir in find_run_dirs(Path(path)):
            if not (run_dir / SUMMARY).exists():
                skipped.append({"run_dir": str(run_dir), "reason": "unfinished (no summary.json)"})
                continue
            try:
                summary = read_summary(run_dir)
            except ValueError as exc:  # harness.records.schema.Unreadable: listed once, left out
                skipped.append({"run_dir": str(run_dir), "reason": f"unreadable {SUMMARY}: {exc}"})
                continue
            damage = damaged_file(run_dir, summary) if with_metrics else None
            if damage:
                skipped.append({"run_dir": str(run_dir), "reason": f"unreadable {damage[0]}: {damage[1]}"})
                continue
            row: dict[str, object] = {}
            flatten("", summary, row)
            row["run_dir"] = str(run_dir)  # where it is now, not where it was written (runs can be moved)
            rows.append(row)
            if with_metrics and (run_dir / METRICS).exists():
                try:
                    frame = pd.read_csv(run_dir / METRICS, dtype={"layer": str, "split": str, "metric": str})
                except (OSError, ValueError, pd.errors.ParserError) as exc:
                    skipped.append({"run_dir": str(run_dir), "reason": f"unreadable metrics.csv: {exc}"})
                    rows.pop()
                    continue
                frame["run_dir"] = str(run_dir)
                metrics.append(frame)
    runs = pd.DataFrame(rows)
    metrics_frame = pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame(columns=METRIC_COLUMNS)
    return runs, metrics_frame, pd.DataFrame(skipped, columns=["run_dir", "reason"])
