"""Every number of a report, computed once from the gathered runs: summaries, comparisons, ranks."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report import edges, stats
from harness.report.cost import cost_table
from harness.report.errors import ReportError
from harness.report.load import Runs

BEST = "at best val setting"  # the comparison of each activation at its own setting chosen on validation
LOST_UNITS = 0.10  # a mean dead or saturated fraction at the end above this is called out in the summary


@dataclass
class Analysis:
    data: Runs
    baseline: str
    baseline_note: str
    summary: pd.DataFrame  # task x act x setting, with `chosen` marking each task x act's best validation setting
    tuned: pd.DataFrame  # the runs at their chosen setting
    comparison: pd.DataFrame  # against the baseline, with `setting` (BEST, or one shared setting)
    means: pd.DataFrame  # task x act mean accuracy at the chosen setting (activations present in every task)
    ranks: pd.DataFrame
    friedman: dict
    several_settings: bool


def pick_baseline(acts: list[str], requested: str | None) -> tuple[str, str]:
    """The baseline and a note for the report; an explicitly requested one that is absent is an error."""
    if requested is not None:
        if requested not in acts:
            raise ReportError(f"baseline {requested!r} is not among the activations of these runs: {', '.join(acts)}")
        return requested, ""
    if "relu" in acts:
        return "relu", ""
    return acts[0], f"No relu runs: {acts[0]} is the baseline (choose another with --baseline)."


def analyse(data: Runs, baseline: str | None = None) -> Analysis:
    """All tables of the report."""
    runs = data.runs
    acts = sorted(runs["act"].unique())
    baseline, note = pick_baseline(acts, baseline)
    summary = stats.summarise(runs)
    choice = stats.best_setting(summary)
    summary = summary.merge(choice.assign(chosen=True), on=["task", "act", "setting"], how="left")
    summary["chosen"] = summary["chosen"].fillna(False).astype(bool)
    tuned = stats.at_best_setting(runs, choice)
    several = bool(runs.groupby("task")["setting"].nunique().max() > 1)
    comparison = stats.compare(tuned, baseline, ["task"])
    if not comparison.empty:
        comparison.insert(1, "setting", BEST if several else "")
    if several:  # also at each shared setting, in the tasks that tried several
        tuned_tasks = runs.groupby("task")["setting"].transform("nunique") > 1
        per_setting = stats.compare(runs[tuned_tasks], baseline, ["task", "setting"])
        if not per_setting.empty:
            per_setting.insert(1, "setting", per_setting.pop("setting"))
            comparison = pd.concat([comparison, per_setting], ignore_index=True)
    means = stats.task_means(summary[summary["chosen"]])
    return Analysis(
        data, baseline, note, summary, tuned, comparison, means, stats.ranks(means), stats.friedman(means), several
    )


def plain_summary(a: Analysis) -> list[str]:
    """The opening bullets: best per task, what is not significant, lost units, divergence, speed, caveats."""
    items = [task_sentence(a, task) for task in sorted(a.summary["task"].unique())]
    items += lost_units(a) + divergence(a) + speed_sentences(a)
    if len(a.ranks) >= 3 and a.friedman["tasks"] >= 2:
        ranks = ", ".join(f"{r.act} {r.mean_rank:.1f}" for r in a.ranks.itertuples())
        items.append(
            f"Average rank across {a.friedman['tasks']} tasks (1 = best): {ranks}; Friedman test "
            f"p = {a.friedman['p']:.3g}" + (f" ({a.friedman['note']})." if a.friedman["note"] else ".")
        )
    seeds = int(a.summary.loc[a.summary["chosen"], "seeds"].min())
    if seeds < stats.FEW_SEEDS:
        items.append(
            f"Few seeds (as few as {seeds} per combination): the intervals are wide, and the exact "
            f"sign-flip test cannot reach p < {stats.ALPHA} with fewer than 6 pairs. Run more seeds before "
            "trusting a ranking."
        )
    elif not a.comparison.empty and a.comparison["pairs"].min() < 6:
        items.append(
            f"With {int(a.comparison['pairs'].min())} paired seeds the exact sign-flip test cannot reach "
            f"p < {stats.ALPHA} (its smallest p is 2/2^n): 'significant' rests on the t-test, and 6 or more "
            "seeds would let the distribution-free test confirm it."
        )
    if len(a.data.skipped):
        items.append(f"{len(a.data.skipped)} run folder(s) were skipped or are incomplete; see the last section.")
    return items


def task_sentence(a: Analysis, task: str) -> str:
    """'mnist1d / mlp: gelu has the best mean test accuracy (0.637 [0.613, 0.661], 3 seeds); against relu ...'"""
    rows = a.summary[(a.summary["task"] == task) & a.summary["chosen"]].sort_values("acc_mean", ascending=False)
    best = rows.iloc[0]
    ci = f" [{best.acc_ci_low:.3f}, {best.acc_ci_high:.3f}]" if pd.notna(best.acc_ci_low) else ""
    seeds = f"{best.seeds} seed" + ("s" if best.seeds != 1 else "")
    text = f"{task}: {best.act} has the best mean test accuracy ({best.acc_mean:.3f}{ci}, {seeds})."
    cmp = a.comparison
    cmp = cmp[(cmp["task"] == task) & cmp["setting"].isin([BEST, ""])] if not cmp.empty else cmp
    if cmp.empty:
        return text + f" Nothing to compare with {a.baseline} here."
    tested = cmp[cmp["p_t_holm"].notna()]
    if len(tested) and not tested["significant"].any():
        text += f" No activation differs significantly from {a.baseline} (Holm-corrected p ≥ {stats.ALPHA})."
    better = [f"{r.act} ({r.diff_mean:+.3f})" for r in tested.itertuples() if r.significant and r.diff_mean > 0]
    worse = [f"{r.act} ({r.diff_mean:+.3f})" for r in tested.itertuples() if r.significant and r.diff_mean < 0]
    same = [f"{r.act} ({r.diff_mean:+.3f}, p = {r.p_t_holm:.2f})" for r in tested.itertuples() if not r.significant]
    untested = [f"{r.act} ({r.pairs} pair)" for r in cmp[cmp["p_t_holm"].isna()].itertuples()]
    parts = [
        f"significantly better than {a.baseline}: {', '.join(better)}" if better else "",
        f"significantly worse than {a.baseline}: {', '.join(worse)}" if worse else "",
        f"not significantly different from {a.baseline}: {', '.join(same)}"
        if same and len(same) < len(tested)
        else f"differences: {', '.join(same)}"
        if same
        else "",
        f"too few paired seeds to test: {', '.join(untested)}" if untested else "",
    ]
    sentence = "; ".join(p for p in parts if p)
    return f"{text} {sentence[:1].upper()}{sentence[1:]}." if sentence else text


def lost_units(a: Analysis) -> list[str]:
    """Activations that ended with many dead or saturated units, with how many of the dead were dead at init."""
    rows = a.summary[a.summary["chosen"]].assign(
        saturated_only=lambda s: s["saturated_mean"] - s["dead_mean"].fillna(0)
    )
    items = []
    for act, group in rows.groupby("act"):
        found = []
        for r in group.itertuples():
            if r.dead_mean >= LOST_UNITS:
                lost = f"{100 * r.lost_mean:.0f}% lost in training" if pd.notna(r.lost_mean) else "lost: n/a"
                found.append(
                    f"{100 * r.dead_mean:.0f}% dead at the end on {r.task} ({100 * r.dead_init_mean:.0f}% "
                    f"were dead at init, {lost}; mean over layers)"
                )
            if r.saturated_only >= LOST_UNITS:
                found.append(f"{100 * r.saturated_only:.0f}% saturated (not dead) on {r.task}")
        if found:
            items.append(f"{act}: {', '.join(found)}.")
    if not items:
        items.append(f"No activation ended with {100 * LOST_UNITS:.0f}% or more dead or saturated units.")
    return items


def divergence(a: Analysis) -> list[str]:
    """The opening bullets on stability and tuning: every setting with unstable runs (diverged, or ended at chance:
    stats.collapsed), then every rate chosen at the edge of its grid (harness.report.edges)."""
    rows = a.summary[(a.summary["diverged"] > 0) | (a.summary["collapsed"] > 0)]
    items = []
    for r in rows.itertuples():
        if not r.collapsed:
            items.append(f"{r.act} diverged in {r.diverged}/{r.seeds} runs at {r.setting} on {r.task}.")
            continue
        counts = ", ".join(
            f"{n} {what}" for n, what in [(r.diverged, "diverged"), (r.collapsed, "ended at chance")] if n
        )
        items.append(
            f"{r.act} was unstable in {r.diverged + r.collapsed}/{r.seeds} runs at {r.setting} on {r.task}: "
            f"{counts} (final validation accuracy at most {stats.CHANCE_MARGIN:g}x chance)."
        )
    found = edges.find_edges(a.summary)
    return items + [f"Tuning may be unfinished: {edges.sentence(e)}." for e in found]


def speed_sentences(a: Analysis) -> list[str]:
    """Time per training step relative to the baseline, per task and machine, from the cost probe's records alone
    (harness.report.cost): a run's own samples/s is never summarised."""
    table = cost_table(a.data.costs, a.tuned, a.baseline)
    items = []
    for (task, where), g in table.groupby(["task", "machine"], sort=True):
        ratios = g[g["act"] != a.baseline].dropna(subset=["step_ratio"]).sort_values("step_ratio", ascending=False)
        if len(ratios):
            listed = ", ".join(f"{r.act} {r.step_ratio:.2f}×" for r in ratios.itertuples())
            items.append(
                f"{task} on {where}: time per training step relative to {a.baseline} (cost probe, paired rounds; "
                f"1 = as fast), slowest first: {listed}."
            )
    missing = sorted(set(a.tuned["task"]) - set(table["task"]))
    if missing:
        items.append(f"No cost probe records for {', '.join(missing)}: no speed or memory figure is shown there.")
    return items
