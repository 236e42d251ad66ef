"""Per-run outcomes the report's five questions need, from summary.json or, for older runs, from metrics.csv.

Each comes from the summary key when the run wrote it; a run that predates the key falls back to metrics.csv
where the same number can be computed honestly from it, and is NaN (shown as n/a) where it cannot.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness import flow

HEAD, FIRST = flow.HEAD, flow.FIRST  # the gradient-flow ratio: the head's norm over the first layer's
WALL = "wall"  # the clock of runs that predate `speed_clock`: elapsed time, on a possibly shared machine


def derive(runs: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add drawdown, dead-at-init, lost, gradient-flow ratios, speed and test-set size; return runs and layers."""
    runs = runs.copy()
    layers = layer_table(runs, metrics)
    per_run = layers.groupby("run_dir")[["dead_init", "lost"]].mean()  # unweighted mean over layers
    runs["dead_init_fraction"] = runs["run_dir"].map(per_run["dead_init"])
    runs["lost_fraction"] = runs["run_dir"].map(per_run["lost"])
    drawdown = metrics_drawdown(metrics)
    runs["val_drawdown_max"] = runs["val_drawdown_max"].fillna(runs["run_dir"].map(drawdown))
    for key, prefix in [("grad_flow_ratio_init", "grad_norm_init_by_layer"), ("grad_flow_ratio", "grad_norm_by_layer")]:
        runs[key] = runs[key].fillna(ratio_from_norms(runs, prefix))
    runs["speed"] = runs["clock_samples_per_s"].fillna(runs["samples_per_s"])
    runs["speed_clock"] = runs["speed_clock"].fillna(WALL) if "speed_clock" in runs else WALL
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
    runs["n_test"] = runs["n_test"].fillna(runs["task"].map(test_sizes(runs, metrics)))
    return runs, layers


def layer_table(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run and hidden layer: dead at init, dead at the end, lost in training, gradient norms."""
    probe0 = metrics[(metrics["split"] == "probe") & (metrics["step"] == 0) & (metrics["metric"] == "dead_fraction")]
    init_from_metrics = probe0.set_index(["run_dir", "layer"])["value"]
    rows = []
    for r in runs.to_dict("records"):
        names = layer_names(r, metrics)
        for depth, layer in enumerate(names):
            dead_init = r.get(f"dead_fraction_init_by_layer.{layer}", math.nan)
            if pd.isna(dead_init):
                dead_init = init_from_metrics.get((r["run_dir"], layer), math.nan)
            rows.append(
                {
                    "run_dir": r["run_dir"],
                    "task": r["task"],
                    "setting": r["setting"],
                    "act": r["act"],
                    "seed": r["seed"],
                    "layer": layer,
                    "depth": depth,
                    "dead_init": float(dead_init),
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


def layer_names(run: dict, metrics: pd.DataFrame) -> list[str]:
    """The run's activation layers in depth order, from its summary keys (or its step-0 probe rows)."""
    prefix = "dead_fraction_by_layer."
    names = [k[len(prefix) :] for k, v in run.items() if k.startswith(prefix) and pd.notna(v)]
    if not names:
        rows = metrics[(metrics["run_dir"] == run["run_dir"]) & (metrics["metric"] == "dead_fraction")]
        names = list(pd.unique(rows["layer"].dropna()))
    return names


def number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def metrics_drawdown(metrics: pd.DataFrame) -> pd.Series:
    """val_drawdown_max of each run from its validation-accuracy rows, in step order."""
    val = metrics[(metrics["split"] == "val") & (metrics["metric"] == "acc") & metrics["layer"].isna()]

    def worst_fall(values: pd.Series) -> float:  # the trainer's own definition, NaN for no evaluation
        fall = flow.drawdown(values.dropna().tolist())
        return math.nan if fall is None else fall

    return val.sort_values("step", kind="stable").groupby("run_dir")["value"].agg(worst_fall)


def ratio_from_norms(runs: pd.DataFrame, prefix: str) -> pd.Series:
    """Head over first-layer weight-gradient norm from the per-layer summary keys (NaN where either is missing)."""
    head, first = f"{prefix}.{HEAD}", f"{prefix}.{FIRST}"
    if head not in runs or first not in runs:
        return pd.Series(math.nan, index=runs.index)
    first_norm = pd.to_numeric(runs[first], errors="coerce")
    return pd.to_numeric(runs[head], errors="coerce") / first_norm.where(first_norm > 0)


def test_sizes(runs: pd.DataFrame, metrics: pd.DataFrame, largest: int = 100_000) -> dict[str, float]:
    """Each task's test-set size, inferred as the smallest n for which every test accuracy is a multiple of 1/n.

    Runs written before summary.json carried `n_test`; accuracies are (correct / n) in double precision, so with
    a few dozen logged accuracies the smallest such n is the size itself. NaN when no n up to `largest` fits.
    """
    test = metrics[(metrics["split"] == "test") & (metrics["metric"] == "acc")][["run_dir", "value"]]
    found = {}
    for task, group in runs.groupby("task"):
        values = pd.concat(
            [
                group["test_acc"],
                group["test_acc_at_best_val"],
                test.loc[test["run_dir"].isin(group["run_dir"]), "value"],
            ]
        ).dropna()
        found[task] = smallest_denominator(np.unique(values.to_numpy(dtype=float)), largest)
    return found


def smallest_denominator(values: np.ndarray, largest: int) -> float:
    values = values[(values > 0) & (values < 1)]
    if len(values) == 0:
        return math.nan
    for start in range(1, largest + 1, 4096):
        n = np.arange(start, min(start + 4096, largest + 1))[:, None]
        scaled = values[None, :] * n
        fits = np.all(np.abs(scaled - np.round(scaled)) < 1e-8, axis=1)
        if fits.any():
            return float(n[fits.argmax(), 0])
    return math.nan
