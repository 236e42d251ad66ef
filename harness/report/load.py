"""Gather runs for a report: load them, set aside the unusable ones, label each run's task, setting and activation.

A task is a dataset x model; every other swept key (lr, init, depth, ...) is a setting within the task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.common import metrics
from harness.records.results import find_run_dirs, load_runs
from harness.report import outcomes
from harness.setup.config import WATCH_ONLY as WATCH_ONLY_KEYS

REQUIRED = ("status", "activation", "model", "dataset", "seed", "config.trainer.lr")
# Config keys that are never settings: the report's own axes (seed, activation, the task's dataset and model) and
# keys that change how a run is watched or timed, not what it computes (harness.setup.config.WATCH_ONLY).
AXES = {"config.seed", "config.model.name", "config.dataset.name"}
WATCH_ONLY = {f"config.{key}" for key in WATCH_ONLY_KEYS}
# Beside the registry's stored metrics, the summary keys the report reads (model selection, the speed's clock, sizes).
READ_BESIDE = [
    "best_val_acc",
    "n_params",
    "config.model.width",
    "clock_samples_per_s",
    "train_cpu_time_s",
    "num_threads",
    "n_test",
]


@dataclass
class Runs:
    """Runs ready for statistics: one row per usable run, their long metrics, and what was set aside and why."""

    runs: pd.DataFrame  # summary columns plus task, setting, act, lr and the outcomes of harness.report.outcomes
    metrics: pd.DataFrame  # metrics.csv rows plus task, setting, act, lr, seed
    skipped: pd.DataFrame  # run_dir, reason
    layers: pd.DataFrame | None = None  # one row per run and layer: dead at init, lost, gradient norms
    costs: pd.DataFrame | None = None  # the cost probe's settings, labelled as the runs (harness.report.cost.attach)


def gather(paths: list[Path]) -> Runs:
    """Load every run under the paths; failed, duplicate and incomplete runs go to `skipped` with the reason."""
    runs, metrics, skipped = load_each(paths)
    if runs.empty:
        return Runs(runs, metrics, skipped)
    skipped = [skipped]
    runs, set_aside = set_aside_unusable(runs)
    skipped.append(set_aside)
    no_metrics = sorted(set(runs["run_dir"]) - set(metrics["run_dir"]))
    skipped.append(skipped_frame([(d, "no metrics.csv: in the tables, not in the figures") for d in no_metrics]))
    runs = label(runs)
    keys = runs[["run_dir", "task", "setting", "act", "lr", "seed"]]
    metrics = metrics.merge(keys, on="run_dir", how="inner")
    runs, layers = outcomes.derive(runs)
    return Runs(runs.reset_index(drop=True), metrics, pd.concat(skipped, ignore_index=True), layers)


def load_each(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """load_runs one run folder at a time, so that one unreadable folder is skipped, not fatal."""
    found = sorted({d.resolve() for p in paths for d in find_run_dirs(Path(p))})  # overlapping paths: once
    runs, metrics, skipped = [], [], []
    for run_dir in found:
        try:
            r, m, s = load_runs(run_dir)
        except Exception as exc:  # whatever is wrong with one folder, the report of the others goes on
            skipped.append(skipped_frame([(str(run_dir), f"unreadable: {type(exc).__name__}: {exc}")]))
            continue
        if len(r):  # a run folder nested in another is found, and kept, on its own
            runs.append(r.iloc[:1])
        if len(m):
            metrics.append(m[m["run_dir"] == str(run_dir)])
        skipped.append(s[s["run_dir"] == str(run_dir)])
    return (
        pd.concat(runs, ignore_index=True) if runs else pd.DataFrame(),
        pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame(columns=["run_dir"]),
        pd.concat(skipped, ignore_index=True) if skipped else skipped_frame([]),
    )


def skipped_frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["run_dir", "reason"])


def set_aside_unusable(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off runs that lack required keys, failed, or repeat another run's exact configuration."""
    reasons = []
    runs = runs.assign(**{k: None for k in REQUIRED if k not in runs.columns})
    for key in ["seed", "config.trainer.lr"]:  # a string here would break grouping and pairing later
        runs[key] = pd.to_numeric(runs[key], errors="coerce")
    absent = runs[list(REQUIRED)].isna()
    for d, row in zip(runs["run_dir"], absent.itertuples(index=False)):
        if any(row):
            reasons.append((d, "summary.json lacks a usable " + ", ".join(k for k, a in zip(REQUIRED, row) if a)))
    runs = runs[~absent.any(axis=1)]
    if "error" not in runs:
        runs = runs.assign(error=None)
    failed = runs["status"] == "failed"
    for d, error in zip(runs.loc[failed, "run_dir"], runs.loc[failed, "error"]):
        reasons.append((d, f"failed: {last_line(error)}"))
    runs = runs[~failed]
    if "config_hash" in runs:
        # The same configuration (seed included) run twice would count one seed twice: keep the latest.
        order = runs.sort_values([c for c in ["finished_at", "run_dir"] if c in runs], ascending=False, kind="stable")
        dup = order.duplicated("config_hash", keep="first") & order["config_hash"].notna()
        kept = order.drop_duplicates("config_hash").set_index("config_hash")["run_dir"]
        for d, h in zip(order.loc[dup, "run_dir"], order.loc[dup, "config_hash"]):
            reasons.append((d, f"duplicate of {kept[h]} (same configuration and seed; the latest is kept)"))
        runs = runs.drop(index=order.index[dup])
    return runs, skipped_frame(reasons)


def last_line(error: object) -> str:
    """The last line of a traceback: the exception itself."""
    lines = [line for line in str(error or "no error recorded").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no error recorded"


def varying(runs: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns among `columns` that take more than one value in runs."""
    return [c for c in columns if runs[c].astype(str).nunique(dropna=False) > 1]


def label(runs: pd.DataFrame) -> pd.DataFrame:
    """Add task (dataset / model), setting (the other swept keys), act (name plus varying parameters), lr."""
    runs = runs.copy()
    for column in [*metrics.stored(), *READ_BESIDE]:  # always present and numeric (null or a string: NaN)
        runs[column] = pd.to_numeric(runs[column], errors="coerce") if column in runs else float("nan")
    runs["lr"] = runs["config.trainer.lr"].astype(float)
    runs["seed"] = runs["seed"].astype(int)
    runs["width"] = matched_width(runs)
    config = [c for c in runs.columns if c.startswith("config.") and not c.startswith("config.activation.")]
    candidates = [c for c in config if c not in AXES | WATCH_ONLY]
    runs["task"] = runs["dataset"].astype(str) + " / " + runs["model"].astype(str)
    runs["setting"] = runs["lr"].map(lambda v: f"lr={v:g}")
    for _, group in runs.groupby("task"):
        # Only keys that differ within one dataset x model are settings: the MLP's width is not the RNN's.
        swept = [c for c in varying(group, candidates) if c != "config.trainer.lr"]
        names = short_names(swept)
        runs.loc[group.index, "setting"] = [
            ", ".join([*(f"{names[c]}={r[c]}" for c in swept), f"lr={r['lr']:g}"]) for _, r in group.iterrows()
        ]
    runs["act"] = runs["activation"].astype(str)
    params = [c for c in runs.columns if c.startswith("config.activation.") and c != "config.activation.name"]
    for name, group in runs.groupby("act"):
        shown = varying(group, [c for c in params if group[c].notna().any()])
        if shown:
            runs.loc[group.index, "act"] = [
                f"{name}(" + ", ".join(f"{c.rsplit('.', 1)[1]}={r[c]}" for c in shown) + ")"
                for _, r in group.iterrows()
            ]
    return runs.copy()  # one block per dtype again: a frame built a column at a time makes pandas warn later


# The width model.match_params matches, per model family (harness.networks.gated.hidden_width; the transformer keeps
# d_model and narrows its FFN: harness.networks.models.transformer.ffn_width), as the results table names it.
WIDTH_NAMES = {"mlp": "units", "cnn": "channels", "rnn": "hidden size", "transformer": "FFN d_ff"}


def model_of(task: str) -> str:
    """'digits / mlp' -> 'mlp': the model of a task label (label() writes them)."""
    return task.rsplit(" / ", 1)[-1]


def width_name(task: str) -> str:
    """What a task's matched width is: 'units', 'channels', 'hidden size', 'FFN d_ff' ('width' for another model)."""
    return WIDTH_NAMES.get(model_of(task), "width")


def matched_width(runs: pd.DataFrame) -> pd.Series:
    """Each run's width that model.match_params matches: the hidden width trained (`width_used`: a gated activation
    trains a narrower one than config.model.width), and for a model that matches in its FFN (the transformer), d_ff."""
    asked = runs["config.model.width"]
    width = runs["width_used"].fillna(asked) if "width_used" in runs else asked
    ffn = [i for i, model in runs["model"].items() if getattr(family_network(str(model)), "matches_ffn", False)]
    width = width.astype(float)
    for i in ffn:
        width.loc[i] = ffn_width_of(runs.loc[i])
    return width


def family_network(model: str) -> object:
    from harness.networks.models import MODELS  # torch loads here, and only for a report

    return MODELS[model].network if model in MODELS else None


def ffn_width_of(run: pd.Series) -> float:
    """The transformer's d_ff from a run's config: model.ffn_ratio x d_model, or 2/3 of it for a gated activation with
    model.match_params (harness.networks.models.transformer.ffn_width); NaN where the activation cannot be built
    here (a user's own with match_params)."""
    from torch import nn

    from harness.networks.activations import ACTIVATIONS, make_activation
    from harness.networks.models.transformer import TransformerConfig, ffn_width

    def value(key: str, default: object) -> object:
        v = run.get(f"config.model.{key}")
        return default if v is None or (isinstance(v, float) and math.isnan(v)) else v

    m = TransformerConfig(
        depth=1,
        width=int(value("width", TransformerConfig.width)),  # type: ignore[call-overload]
        ffn_ratio=float(value("ffn_ratio", TransformerConfig.ffn_ratio)),  # type: ignore[arg-type]
        match_params=bool(value("match_params", False)),
    )
    name = str(run.get("activation"))
    if m.match_params and name not in ACTIVATIONS:
        return math.nan
    params = {
        k.removeprefix("config.activation."): v
        for k, v in run.items()
        if str(k).startswith("config.activation.") and k != "config.activation.name" and pd.notna(v)
    }
    try:  # without match_params d_ff does not depend on the activation
        act = make_activation(name, **params) if m.match_params else nn.Identity()
    except Exception:  # parameters this registry no longer takes: the width cannot be told
        return math.nan
    return float(ffn_width(m, act))


def short_names(columns: list[str]) -> dict[str, str]:
    """'config.model.init' -> 'init', unless two swept keys share that last part (then 'model.init')."""
    last = [c.rsplit(".", 1)[-1] for c in columns]
    return {c: n if last.count(n) == 1 else c.removeprefix("config.") for c, n in zip(columns, last)}
