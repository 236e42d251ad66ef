"""Every number of a report, computed once from the gathered runs: summaries, comparisons, ranks, speed."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report import stats
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


def relative_speed(tuned: pd.DataFrame, baseline: str) -> pd.Series:
    """Median over tasks of each activation's median samples/s relative to the baseline's in the same task."""
    per_task = tuned.groupby(["task", "act"])["speed"].median().unstack()
    if baseline not in per_task:
        return pd.Series(dtype=float)
    return per_task.div(per_task[baseline], axis=0).median().sort_values()


def speed_noise(tuned: pd.DataFrame) -> float:
    """The largest relative spread (sd / mean) of samples/s among repeats of one combination."""
    spread = tuned.groupby(["task", "act"])["speed"].agg(lambda s: s.std() / s.mean() if len(s) > 1 else 0)
    return float(spread.max()) if len(spread) else 0.0


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
    rows = a.summary[a.summary["diverged"] > 0]
    return [f"{r.act} diverged in {r.diverged}/{r.seeds} runs at {r.setting} on {r.task}." for r in rows.itertuples()]


def speed_sentences(a: Analysis) -> list[str]:
    if a.tuned["measured_as"].nunique() > 1:
        return [
            "Speed is not compared across tasks: the runs were timed differently ("
            + "; ".join(sorted(a.tuned["measured_as"].unique()))
            + "); see each task's cost."
        ]
    speed = relative_speed(a.tuned, a.baseline).drop(a.baseline, errors="ignore").dropna()
    if speed.empty:
        return []
    listed = ", ".join(f"{act} {value:.2f}×" for act, value in speed.items())
    text = f"Speed relative to {a.baseline} (median samples/s across tasks; 1 = as fast), slowest first: {listed}."
    noise = speed_noise(a.tuned)
    if noise > 0.2:
        text += (
            f" Speed varies by up to {100 * noise:.0f}% (sd / mean) between seeds of one combination (a busy "
            "or shared machine), so small speed differences are noise."
        )
    return [text]
