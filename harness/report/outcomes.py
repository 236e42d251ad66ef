"""Per-run outcomes the report's five questions need, from what each run's summary.json holds (schema 2: the
validated reader upgrades a schema-1 summary once, in harness.records.upgrade, so that nothing here falls back on
metrics.csv): dead at init and lost in training per run and per layer, the speed by the run's own clock and how it
was measured.
"""

from __future__ import annotations

import math

import pandas as pd


def derive(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add dead-at-init, lost and speed, and how the speed was measured; return runs and their layer table."""
    runs = runs.copy()
    layers = layer_table(runs)
    per_run = layers.groupby("run_dir")[["dead_init", "lost"]].mean()  # unweighted mean over layers
    runs["dead_init_fraction"] = runs["run_dir"].map(per_run["dead_init"])
    runs["lost_fraction"] = runs["run_dir"].map(per_run["lost"])
    runs["speed"] = runs["clock_samples_per_s"]
    group = runs["group.size"] if "group.size" in runs else pd.Series(1, index=runs.index)
    runs["measured_as"] = [
        f"{clock}, {device}, {threads:g} thread(s)" + (f", {size:g} at once" if size > 1 else "")
        for clock, device, threads, size in zip(
            runs["speed_clock"],
            runs.get("device", pd.Series("?", index=runs.index)).fillna("?"),
            runs["num_threads"].fillna(0),
            pd.to_numeric(group, errors="coerce").fillna(1),
        )
    ]
    return runs, layers


def layer_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and hidden layer: dead at init, dead at the end, lost in training, gradient norms."""
    rows = []
    for r in runs.to_dict("records"):
        for depth, layer in enumerate(layer_names(r)):
            rows.append(
                {
                    "run_dir": r["run_dir"],
                    "task": r["task"],
                    "setting": r["setting"],
                    "act": r["act"],
                    "seed": r["seed"],
                    "layer": layer,
                    "depth": depth,
                    "dead_init": number(r.get(f"dead_fraction_init_by_layer.{layer}")),
                    "dead_end": number(r.get(f"dead_fraction_by_layer.{layer}")),
                    "lost": number(r.get(f"lost_fraction_by_layer.{layer}")),
                    "grad_init": number(r.get(f"grad_norm_init_by_layer.{layer}")),
                    "grad_train": number(r.get(f"grad_norm_by_layer.{layer}")),
                }
            )
    columns = [
        "run_dir",
        "task",
        "setting",
        "act",
        "seed",
        "layer",
        "depth",
        "dead_init",
        "dead_end",
        "lost",
        "grad_init",
        "grad_train",
    ]
    return pd.DataFrame(rows, columns=columns)


def layer_names(run: dict[str, object]) -> list[str]:
    """The run's activation layers in depth order, from its per-layer summary keys (a diverged run has no final
    probe: its step-0 probe's layers)."""
    names: dict[str, None] = {}  # a dict, not a set: first-seen order is the depth order
    for prefix in ("dead_fraction_init_by_layer.", "dead_fraction_by_layer."):
        names.update({k[len(prefix) :]: None for k, v in run.items() if k.startswith(prefix) and pd.notna(v)})
    return list(names)


def number(value: float | str | None) -> float:
    """value as a float; NaN for a missing (None) or non-numeric one."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
