"""Write one run's records atomically; load any folder of runs into pandas DataFrames."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import pandas as pd

SCHEMA_VERSION = 1
SUMMARY = "summary.json"
METRICS = "metrics.csv"
METRIC_COLUMNS = ["step", "split", "metric", "layer", "value", "t"]
PACKAGES = ("torch", "torchvision", "hydra-core", "omegaconf", "numpy", "pandas", "mnist1d", "scikit-learn")


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then os.replace: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_or_none(value):
    """JSON has no NaN or Inf: store non-finite numbers as null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_summary(run_dir: Path, summary: dict) -> None:
    """Write summary.json atomically; it is the last file a run writes, and its presence means finished."""
    text = json.dumps(finite_or_none(summary), indent=2, allow_nan=False)
    atomic_write(Path(run_dir) / SUMMARY, lambda f: f.write(text + "\n"))


def write_metrics(run_dir: Path, rows: list[tuple]) -> None:
    """Write metrics.csv (long form: step, split, metric, layer, value, t) atomically."""

    def write(f):
        writer = csv.writer(f)
        writer.writerow(METRIC_COLUMNS)
        for step, split, metric, layer, value, t in rows:
            writer.writerow([step, split, metric, layer or "", "" if value is None else repr(float(value)),
                             "" if t is None else t])

    atomic_write(Path(run_dir) / METRICS, write)


def read_summary(run_dir: Path) -> dict:
    """Read a run's summary.json; raises on a missing, truncated or corrupt file."""
    with open(Path(run_dir) / SUMMARY) as f:
        summary = json.load(f)
    if not isinstance(summary, dict) or "status" not in summary:
        raise ValueError("summary.json has no status")
    return summary


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a result."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit sha, whether the work tree has uncommitted changes) of the code, or (None, None) outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
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


def flatten(prefix: str, value, out: dict) -> None:
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
            except (OSError, ValueError) as exc:
                skipped.append({"run_dir": str(run_dir), "reason": f"unreadable summary.json: {exc}"})
                continue
            row = {}
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
