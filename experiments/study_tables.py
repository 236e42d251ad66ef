"""Helpers the study reports share: harness.report's statistics, cells and figure style applied to study tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report import figures, render, stats
from harness.report.build import portable
from harness.report.render import Figure
from harness.setup.data import load_dataset

# the paired-comparison columns the study tables keep (stats.compare has more: permutation p, notes)
PAIRED_COLUMNS = ["pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "p_t", "p_t_holm", "wins", "effect_dz"]


def cells(frame: pd.DataFrame, digits: int = 3, significant: bool = False) -> pd.DataFrame:
    """A table ready for render.Table: named index as columns, floats through render.num (or to `digits`
    significant figures, for quantities that span decades)."""
    if frame.index.name or any(frame.index.names):
        frame = frame.reset_index()
    frame = frame.copy()
    frame.columns = [" / ".join(str(x) for x in c if str(x)) if isinstance(c, tuple) else str(c) for c in frame.columns]

    def cell(v):
        if not isinstance(v, float) or v != v:
            return render.num(v) if isinstance(v, float) else ("–" if v is None else v)
        return f"{v:.{digits}g}" if significant else render.num(v, digits)

    return frame.apply(lambda col: col.map(cell))


def mean_interval(values: pd.Series, scale: float = 100.0, digits: int = 1) -> str:
    """'mean [95% CI]' of a series, scaled (accuracies as percentages), by harness.report.stats.mean_ci."""
    mean, _, lo, hi = stats.mean_ci(values * scale)
    return render.with_ci(mean, lo, hi, digits)


def figure(fig, out: Path, name: str, caption: str) -> Figure:
    return Figure(figures.save(fig, out / "figures" / name), caption)


def write_csv(frame: pd.DataFrame, out: Path, name: str) -> None:
    """A study table as CSV; run folders relative to the working directory, so no machine path is committed."""
    portable(frame, Path.cwd()).to_csv(out / name, index=False)


def layer_index(layer: str) -> int:
    return int(layer.split(".")[1]) if layer.startswith("hidden.") else 10**6


def by_layer(runs: pd.DataFrame, key: str, keep: list[str]) -> pd.DataFrame:
    """Long table of a `KEY_by_layer` summary value: keep columns, layer, depth index, value."""
    cols = [c for c in runs.columns if c.startswith(f"{key}_by_layer.")]
    long = runs[keep + cols].melt(id_vars=keep, var_name="layer", value_name="value")
    long["layer"] = long["layer"].str.removeprefix(f"{key}_by_layer.")
    long["depth"] = long["layer"].map(layer_index)
    return long.dropna(subset=["value"])


def variant(runs: pd.DataFrame, group: str) -> pd.Series:
    """The `+experiment/GROUP=X` choice of each run, from its overrides."""

    def pick(overrides):
        for o in overrides if isinstance(overrides, list) else []:
            if o.lstrip("+").startswith(f"experiment/{group}="):
                return o.split("=", 1)[1]
        return None

    return runs["overrides"].map(pick)


def paired_table(runs: pd.DataFrame, value: str, a: str, b: str) -> dict:
    """a - b of `value`, paired by seed, with harness.report.stats.paired (wins = seeds where a > b)."""
    by_seed = runs.pivot_table(index="seed", columns="activation", values=value, aggfunc="first")
    if a not in by_seed or b not in by_seed:
        return {}
    return stats.paired(by_seed[a], by_seed[b])


def against_relu(runs: pd.DataFrame, group: list[str], metric: str) -> pd.DataFrame:
    """Each activation against ReLU within each `group`, paired by seed, Holm across the activations: the
    report's harness.report.stats.compare on study runs (its `act` is their `activation`)."""
    compared = stats.compare(runs.rename(columns={"activation": "act"}), "relu", group, metric)
    columns = [*group, "activation", *PAIRED_COLUMNS]
    return compared.rename(columns={"act": "activation"}).reindex(columns=columns)


def tuned_lr(runs: pd.DataFrame, by: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each `by` group's learning rate chosen on validation by the report's rule (stats.tuned_setting; the test
    split never chooses): (by + [lr], the validation grid: by, lr, seeds, diverged, collapsed, val_acc_mean)."""
    return stats.tuned_setting(runs.assign(lr=runs["config.trainer.lr"]), by, setting="lr", lr="lr")


def at_tuned_lr(runs: pd.DataFrame, by: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    """Each `by` group's runs at its tuned learning rate (tuned_lr), and the mean validation accuracy the rule
    compared, per group and rate (the grid, indexed by [*by, lr])."""
    choice, grid = tuned_lr(runs, by)
    at_tuned = runs.assign(lr=runs["config.trainer.lr"]).merge(choice, on=[*by, "lr"], how="inner")
    return at_tuned, grid.set_index([*by, "lr"])["val_acc_mean"]


def training_samples(runs: pd.DataFrame) -> pd.Series:
    """The size of each run's training split, by loading its dataset as the run did (cached, no download)."""
    keys = ["config.dataset.name", "config.dataset.root", "config.dataset.train_size", "config.dataset.val_fraction"]
    sizes = {}
    for key in runs[keys].drop_duplicates().itertuples(index=False):
        name, root, train_size, val_fraction = key
        train_size = None if pd.isna(train_size) else int(train_size)
        sizes[tuple(key)] = len(load_dataset(name, root, False, train_size, val_fraction, "cpu").x_train)
    return pd.Series([sizes[tuple(k)] for k in runs[keys].itertuples(index=False)], index=runs.index)


def tuned_runs(runs: pd.DataFrame, by: list[str], order: list[str]) -> tuple[pd.DataFrame, list]:
    """With a learning-rate grid, each `by` group's runs at its own rate tuned on validation, and the grid as a
    table (rows: activations in `order`); with one rate, the runs as they are and no table."""
    if runs["config.trainer.lr"].nunique() < 2:
        return runs, []
    at_tuned, grid = at_tuned_lr(runs, by)
    table = grid.unstack([k for k in by if k != "activation"] + ["lr"]).reindex(order)
    heading = (
        "Best validation accuracy (mean over the seeds that did not diverge) per learning rate; every comparison "
        "below takes each activation at the rate chosen here by the rule of docs/reports.md (the best mean among "
        "the rates where no seed diverged or ended at chance)"
    )
    return at_tuned, [render.Heading(heading), render.Table(cells(table))]
