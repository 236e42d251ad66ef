"""The report's first screen: per task, five questions (accuracy, stability, dead units, gradient flow, cost),
each answered with a number and its uncertainty, and the table that carries the same columns."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness.common import metrics
from harness.common.metrics import QUESTIONS, Metric
from harness.report import edges, stats
from harness.report.analysis import BEST, Analysis
from harness.report.cost import cost_table
from harness.report.cost_text import answer
from harness.report.load import width_name
from harness.report.render import Block, metric_range, num, p_value, percent, rate, with_ci

NA = "n/a"


def chosen(a: Analysis, task: str) -> pd.DataFrame:
    """The task's summary rows at each activation's chosen setting, best accuracy first."""
    s = a.summary[(a.summary["task"] == task) & a.summary["chosen"]]
    return s.sort_values("acc_mean", ascending=False, na_position="last")


def test_set(a: Analysis, task: str) -> str:
    """'Test set: 360 samples; one sample = 0.28 points of accuracy.'"""
    n = a.summary.loc[a.summary["task"] == task, "n_test"].dropna()
    if n.empty:
        return "Test-set size unknown (the runs did not record it, and their logged accuracies do not pin it down)."
    n = int(n.iloc[0])
    return f"Test set: {n:,} samples; one sample is worth {100 / n:.2g} points of accuracy."


def settings_line(a: Analysis, task: str) -> str:
    rows = chosen(a, task)
    tried = a.summary.loc[a.summary["task"] == task, "setting"].nunique()
    if tried < 2:
        return f"One setting: {rows['setting'].iloc[0]}."
    picks = "; ".join(f"{r.act}: {r.setting}{init_used(r)}" for r in rows.itertuples())
    return (
        f"{tried} settings tried; each activation at the setting chosen on validation (the best mean validation "
        f"accuracy among settings where no seed diverged or fell to chance; never the test split): {picks}."
        + edge_warning(a, task)
    )


def edge_warning(a: Analysis, task: str) -> str:
    """' Tuning may be unfinished: ...' for each activation whose rate was chosen at the edge of its grid."""
    found = edges.find_edges(a.summary[a.summary["task"] == task])
    return "".join(f" Tuning may be unfinished: {edges.sentence(e, with_task=False)}." for e in found)


def init_used(row: object) -> str:
    """' (init used: kaiming)' for runs that recorded which initialisation model.init=auto chose."""
    used = getattr(row, "init_used", None)
    return f" (init used: {used})" if isinstance(used, str) and used else ""


def accuracy(a: Analysis, task: str) -> str:
    rows = chosen(a, task)
    listed = ", ".join(f"{r.act} {with_ci(r.acc_mean, r.acc_ci_low, r.acc_ci_high)}" for r in rows.itertuples())
    text = f"Test accuracy at best validation, mean [95% CI] over seeds, best first: {listed}."
    cmp = a.comparison
    if cmp.empty:
        return text
    cmp = cmp[(cmp["task"] == task) & cmp["setting"].isin([BEST, ""]) & cmp["p_t_holm"].notna()]
    if len(cmp):
        m = int(cmp["family"].iloc[0])
        parts = [
            f"{r.act} {r.diff_mean:+.3f} [{num(r.diff_adj_low)}, {num(r.diff_adj_high)}], "
            f"p = {p_value(r.p_t_holm)}"
            f" ({'significant' if r.significant else 'not significant'})"
            for r in cmp.itertuples()
        ]
        text += (
            f" Against {a.baseline}, paired by seed (interval Bonferroni-adjusted for {m} comparison"
            f"{'s' if m != 1 else ''}, p Holm-corrected t-test): " + "; ".join(parts) + "."
        )
    return text


def stability(a: Analysis, task: str) -> str:
    rows = chosen(a, task)
    runs = a.tuned[a.tuned["task"] == task]
    unstable = ", ".join(unstable_runs(runs[runs["act"] == r.act], r.act) for r in rows.itertuples())
    draws = []
    for r in rows.itertuples():
        if math.isnan(r.drawdown_mean):
            draws.append(f"{r.act} {NA}")
            continue
        ci = "" if math.isnan(r.drawdown_ci_low) else f" [{points(r.drawdown_ci_low)}, {points(r.drawdown_ci_high)}]"
        draws.append(
            f"{r.act} {points(r.drawdown_mean)}{ci}, worst {points(r.drawdown_worst)} "
            f"(seed {int(r.drawdown_worst_seed)})"
        )
    return (
        f"Unstable runs ({unstable_rule(runs)}): {unstable}. Validation drawdown (worst fall below the running best, "
        f"in accuracy points), mean [95% CI] and worst seed: {'; '.join(draws)}."
    )


def unstable_rule(runs: pd.DataFrame) -> str:
    """What counts as unstable (stats.diverged, stats.collapsed), with the chance level of the task's dataset."""
    datasets = sorted(runs["dataset"].dropna().astype(str).unique()) if "dataset" in runs else []
    chances = zip(datasets, stats.chance_accuracy(pd.Series(datasets, dtype=object)))
    known = [f"1/{round(1 / c)} on {d}, so at most {stats.CHANCE_MARGIN * c:.3g}" for d, c in chances if c > 0]
    level = f"chance is {'; '.join(known)}" if known else "chance is unknown for this dataset: none is judged so"
    return f"diverged, or ended at chance: final validation accuracy at most {stats.CHANCE_MARGIN:g}x chance; {level}"


def unstable_runs(runs: pd.DataFrame, act: str) -> str:
    """'relu 2/8 (1 diverged: seed 3; 1 ended at chance: seed 5)': which seeds did what."""
    diverged, at_chance = stats.diverged(runs), stats.collapsed(runs)
    parts = [
        f"{int(flags.sum())} {what}: {seed_list(runs.loc[flags, 'seed'])}"
        for flags, what in [(diverged, "diverged"), (at_chance, "ended at chance")]
        if flags.any()
    ]
    text = f"{act} {int((diverged | at_chance).sum())}/{len(runs)}"
    return text + (f" ({'; '.join(parts)})" if parts else "")


def seed_list(seeds: pd.Series) -> str:
    """'seed 3' or 'seeds 1, 4'."""
    values = sorted(int(s) for s in seeds)
    return ("seed " if len(values) == 1 else "seeds ") + ", ".join(map(str, values))


def points(x: float | None) -> str:
    return NA if x is None or math.isnan(x) else f"{100 * max(x, 0):.1f}"


def dead_units(a: Analysis, task: str) -> str:
    rows = chosen(a, task)
    layers = a.data.layers
    assert layers is not None  # gather leaves layers unset only without runs, and no report is made then
    layers = layers[layers["run_dir"].isin(a.tuned["run_dir"]) & (layers["task"] == task)]
    have_lost = rows["lost_mean"].notna().any()
    parts = []
    for r in rows.itertuples():
        by_layer = layers[layers["act"] == r.act].groupby("layer", sort=False)[["dead_init", "lost"]].mean()
        text = f"{r.act} {percent(r.dead_init_mean)} dead at init"
        text += f", {lost_text(r.lost_mean)} lost in training" if have_lost else ""
        if len(by_layer) and by_layer["dead_init"].max() > 0:
            text += f" (most dead at init: {by_layer['dead_init'].idxmax()} {percent(by_layer['dead_init'].max())})"
        if len(by_layer) and by_layer["lost"].max() > 0:
            text += f" (most lost: {by_layer['lost'].idxmax()} {percent(by_layer['lost'].max())})"
        parts.append(text + f", {percent(r.dead_mean)} dead at the end" + sparsity_text(r))
    missing = (
        ""
        if have_lost
        else (
            " Lost in training (alive at init, dead at the end, per unit): n/a, these runs "
            "predate per-unit masks; the end minus init is not that number."
        )
    )
    return "Mean over layers and seeds; dead = f'(z) = 0 on every probe sample: " + "; ".join(parts) + "." + missing


SPARSITY_WORDS = {"zero": "exactly zero", "cett": "CETT-sparse", "small": "near zero"}  # metrics.py's short names


def sparsity_text(row: object) -> str:
    """' (activations 41% exactly zero, 63% CETT-sparse, 44% near zero)' at the end (docs/activations.md,
    Sparsity): those the runs measured (CETT only in the MLP and the transformer; none before they were kept)."""
    found = [
        f"{percent(v)} {words}"
        for short, words in SPARSITY_WORDS.items()
        if (v := getattr(row, f"{short}_mean", math.nan)) is not None and not math.isnan(v)
    ]
    return f" (activations {', '.join(found)})" if found else ""


def lost_text(x: float | None) -> str:
    return NA if x is None or math.isnan(x) else percent(x)


def gradient_flow(a: Analysis, task: str) -> str:
    rows = chosen(a, task)
    parts = [
        f"{r.act} {ratio(r.ratio_init_gmean, r.ratio_init_ci_low, r.ratio_init_ci_high)} at init, "
        f"{ratio(r.ratio_train_gmean, r.ratio_train_ci_low, r.ratio_train_ci_high)} over training"
        for r in rows.itertuples()
    ]
    return (
        "Head over first-layer weight-gradient norm, geometric mean [95% CI] over seeds "
        "(1 = even; far above 1 = the gradient shrinks towards the input): " + "; ".join(parts) + "."
    )


def ratio(g: float | None, lo: float, hi: float) -> str:
    if g is None or math.isnan(g):
        return NA
    return f"{g:.3g}×" + (f" [{lo:.3g}, {hi:.3g}]" if not math.isnan(lo) else "")


def cost(a: Analysis, task: str) -> str:
    """Time per training step and per forward pass, and memory per step, from the cost probe's records alone
    (harness.report.cost); a run's own samples/s is never shown. The size is the runs'."""
    table = cost_table(a.data.costs, a.tuned, a.baseline)
    runs = a.tuned[a.tuned["task"] == task]
    n_params = runs["n_params"].dropna()
    size = f" {int(n_params.iloc[0]):,} parameters" if len(n_params) and n_params.nunique() == 1 else ""
    width = runs["width"].dropna()
    size += f", width {int(width.iloc[0])}" if size and len(width) and width.nunique() == 1 else ""
    return answer(table, task, a.baseline) + (f" Size:{size}." if size else "")


ANSWERS: dict[str, Callable[[Analysis, str], str]] = {
    "accuracy": accuracy,
    "stability": stability,
    "dead units": dead_units,
    "gradient flow": gradient_flow,
    "cost": cost,
}


SHOW = {"percent": percent, "points": points, "rate": rate, "ratio": lambda v: f"{v:.3g}×", "loss": num, "number": num}


def shown(m: Metric, value: float | None) -> str:
    return NA if value is None or math.isnan(value) else SHOW[m.fmt](value)


def metric_cells(m: Metric, s: pd.DataFrame) -> list[str]:
    """A registry metric's results-table cells from the summary over seeds, as its `cell` says."""
    mean = s[f"{m.short}_gmean" if m.geometric else f"{m.short}_mean"]
    if m.cell == "mean_ci":  # the interval inside the metric's range: an accuracy's never past 1
        bounds = metric_range(m)
        return [
            with_ci(v, lo, hi, bounds=bounds)
            for v, lo, hi in zip(mean, s[f"{m.short}_ci_low"], s[f"{m.short}_ci_high"])
        ]
    if m.cell == "mean_worst":
        return [f"{shown(m, v)} ({shown(m, w)})" for v, w in zip(mean, s[f"{m.short}_worst"])]
    if m.cell == "mean_sd":
        return [
            shown(m, v) if math.isnan(sd) else f"{shown(m, v)} ± {shown(m, sd)}"
            for v, sd in zip(mean, s[f"{m.short}_sd"])
        ]
    return [shown(m, v) for v in mean]


def glance_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The registry's table metrics (harness.common.metrics) as columns, one row per task x activation x setting; the
    divergence count after the first, n_params and the matched width (named: units, channels, hidden size, FFN d_ff)
    beside them."""
    s = summary
    table = pd.DataFrame({"task": s["task"], "activation": s["act"], "setting": s["setting"], "seeds": s["seeds"]})
    for i, m in enumerate(metrics.in_table()):
        table[m.label] = metric_cells(m, s)
        if i == 0:
            table["diverged"] = [f"{d}/{n}" for d, n in zip(s["diverged"], s["seeds"])]
    table["n_params"] = s["n_params"].map(lambda v: NA if math.isnan(v) else f"{int(v):,}")
    table["matched width"] = [
        NA if pd.isna(w) else f"{width_name(str(task))} {int(w)}" for task, w in zip(s["task"], s["width"])
    ]
    table["note"] = s["note"]
    table = table.reset_index(drop=True)
    if "init_used" in s and s["init_used"].notna().any():
        table.insert(3, "init used", s["init_used"].fillna(NA).to_numpy())
    return table


def first_screen(a: Analysis, task: str, figures: dict[str, str], overview_png: Path | None = None) -> list[Block]:
    """The task's five answers, each followed by its interactive figure (HTML); the static overview (Markdown)."""
    from harness.report.captions import CAPTIONS
    from harness.report.render import Answer, Heading, Interactive, Text

    blocks: list[Block] = [Heading(task), Text(f"{test_set(a, task)} {settings_line(a, task)}")]
    for question in QUESTIONS:
        blocks.append(
            Answer(
                question.capitalize(), ANSWERS[question](a, task), figures.get(question, ""), CAPTIONS[f"q_{question}"]
            )
        )
    if overview_png is not None:
        blocks.append(Interactive("", CAPTIONS["overview"], overview_png))
    return blocks
