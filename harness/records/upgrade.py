"""summary.json from schema 1 to schema 2, in one place.

Schema 2 (2026-12-05) is schema 1 with the run's course and speed keys always there, written by the run itself:
`n_test`, `val_drawdown_max`, `grad_flow_ratio_init`, `grad_flow_ratio`, `dead_fraction_init_by_layer`,
`lost_fraction_by_layer`, `speed_clock`, `clock_samples_per_s` and `width_used`. Schema-1 runs written before
some of those keys existed lack them, and the report used to derive each in a fallback of its own. `upgrade`
derives them once, here, from the summary, metrics.csv and the dataset's registry entry (what cannot be
recovered is null: units lost in training need per-unit masks that those runs did not keep). The validated
reader (harness.records.schema) applies it to every schema-1 summary it reads, so that every reader sees schema 2;
`python -m harness.records.migrate DIR ...` writes the upgrade into the folders once, keeping each schema-1 file beside
it as summary.v1.json.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.common import flow

INIT_PROBE = (0, "probe", "dead_fraction")  # metrics.csv's rows of the units dead at the step-0 probe


def metrics_rows(run_dir: Path) -> list[tuple]:
    """metrics.csv as the trainer's rows (step, split, metric, layer, value, t); [] without the file."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            (int(r["step"]), r["split"], r["metric"], r["layer"] or None, float(r["value"] or "nan"), r.get("t"))
            for r in csv.DictReader(f)
        ]


def test_size(dataset: str | None) -> int | None:
    """The dataset's test split: fixed by its registry entry, whatever the run's training size."""
    from harness.setup.data import DATASETS  # torch: only for the runs that need it

    spec = None if dataset is None else DATASETS.get(dataset)
    return None if spec is None else spec.test


def upgrade(summary: dict, run_dir: Path) -> dict:
    """A schema-1 summary as schema 2 (a schema-2 one as it is): each missing key derived as its writer would."""
    if summary.get("schema_version") != 1:
        return summary
    s = {**summary, "schema_version": 2}
    if s.get("status") == "failed":  # nothing was measured
        return s
    rows = metrics_rows(run_dir)
    step0 = {layer: v for step, split, metric, layer, v, _ in rows if (step, split, metric) == INIT_PROBE}
    derived = {
        "n_test": lambda: test_size(s.get("dataset")),
        "val_drawdown_max": lambda: flow.drawdown(flow.val_accuracies(rows)),
        "grad_flow_ratio_init": lambda: flow.grad_flow_ratio(s.get("grad_norm_init_by_layer") or {}),
        "grad_flow_ratio": lambda: flow.grad_flow_ratio(s.get("grad_norm_by_layer") or {}),
        "dead_fraction_init_by_layer": lambda: step0,
        "lost_fraction_by_layer": lambda: None,  # needs the per-unit masks that schema-1 runs did not keep
        "speed_clock": lambda: "wall",  # elapsed time, the only clock runs had before speed_clock
        "clock_samples_per_s": lambda: s.get("samples_per_s"),
        "width_used": lambda: ((s.get("config") or {}).get("model") or {}).get("width"),
    }
    for key, derive in derived.items():
        if key not in s:
            s[key] = derive()
    return s
