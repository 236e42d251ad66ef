"""What a tracker is sent, read from a run's records alone (no tracker package here): each metrics.csv row's name,
the configuration as flat parameters, the summary's figures and tags, and tracker.json, where a run folder keeps
what each tracker holds of it (its run id, how many rows it has), so that a resumed job or an export continues
instead of repeating."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from harness.common import metrics
from harness.records.results import METRICS as METRICS_FILE
from harness.records.results import atomic_write, flatten

STATE = "tracker.json"
Row = tuple  # (step, split, metric, layer, value, t): one metrics.csv line, as harness.records.recorder has it
# the summary's numbers besides the registry's stored metrics that a tracker shows at the end
EXTRA_FIGURES = ("best_val_acc", "val_acc", "train_acc", "train_time_s", "clock_samples_per_s", "n_params")
TAGS = ("activation", "model", "dataset", "seed", "config_hash", "status")
UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")  # MLflow's rule for metric and parameter names


def tag_of(row: Row) -> str:
    """A row's series: split/metric, /layer for a per-layer one, /tNNN for a gradient through time."""
    step, split, metric, layer, value, t = row
    name = f"{split}/{metric}" + (f"/{layer}" if layer else "") + ("" if t is None or t == "" else f"/t{int(t):03d}")
    return UNSAFE.sub("_", name)


def read_rows(run_dir: Path) -> list[Row]:
    """metrics.csv's rows as the recorder held them (values exact: they were written with repr); [] without it."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        return [
            (int(step), split, metric, layer or None, float(value) if value else None, int(t) if t else None)
            for step, split, metric, layer, value, t in reader
        ]


def points(rows: list[Row]) -> list[tuple[str, float, int]]:
    """(name, value, step) of each row that holds a number."""
    return [(tag_of(r), float(r[4]), int(r[0])) for r in rows if r[4] is not None]


def params(summary: dict) -> dict[str, str | int | float | bool]:
    """The run's configuration (summary.json's `config`) as flat dotted parameters; null and lists as text."""
    flat: dict[str, object] = {}
    flatten("", summary.get("config") or {}, flat)
    return {
        UNSAFE.sub("_", k): v if isinstance(v, str | int | float | bool) else json.dumps(v) for k, v in flat.items()
    }


def figures(summary: dict) -> dict[str, float]:
    """The summary's numbers at the end: the metric registry's stored metrics, and a few more (EXTRA_FIGURES)."""
    keys = metrics.stored() + list(EXTRA_FIGURES)
    out = {}
    for key in keys:
        value = summary.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def tags(summary: dict, run_dir: Path) -> dict[str, str]:
    """What a tracker files the run under: its axes, seed, config_hash, its folder and its group's place."""
    out = {k: str(summary.get(k)) for k in TAGS if k != "status"}
    group = summary.get("group") or {}
    out.update({f"group.{k}": str(v) for k, v in group.items()})
    out["run_dir"] = str(run_dir)
    return out


def read_state(folder: Path) -> dict[str, Any]:
    """A run's (or a sweep's) tracker.json; {} when there is none or it cannot be read (the tracker starts anew)."""
    try:
        state = json.loads((Path(folder) / STATE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(folder: Path, state: dict[str, Any]) -> None:
    text = json.dumps(state, indent=1, sort_keys=True)
    atomic_write(Path(folder) / STATE, lambda f: f.write(text + "\n"))
