"""The report's sections after the first screen: tables per task, per layer and per setting, the paired
comparisons, ranks across tasks, the activation gallery, skipped runs and the method."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.common import metrics
from harness.report import edges, stats
from harness.report.analysis import Analysis
from harness.report.captions import CAPTIONS
from harness.report.cost import compute_line
from harness.report.headline import glance_table
from harness.report.render import Block, Bullets, Figure, Heading, Table, Text, num, p_value, percent, with_ci


def caption(name: str) -> str:
    """The caption of a figure file name such as 'mnist1d-mlp_units'."""
    return CAPTIONS.get(name, CAPTIONS.get(name.rsplit("_", 1)[-1], CAPTIONS.get(name.split("_", 1)[-1], "")))


def figure_blocks(drawn: dict[str, Path | str], names: list[str], notes: dict[str, str] | None = None) -> list[Block]:
    """The figures drawn, each with its caption and its note (which activations a panel leaves out, and why)."""
    blocks: list[Block] = []
    for name in names:
        if name not in drawn:
            continue
        result = drawn[name]
        text = " ".join(filter(None, [caption(name), (notes or {}).get(name, "")]))
        blocks.append(Figure(result, text) if isinstance(result, Path) else Text(f"{name}: {result}"))
    return blocks


def results_blocks(a: Analysis, drawn: dict[str, Path | str]) -> list[Block]:
    chosen = a.summary[a.summary["chosen"]]
    note = " Each activation at its setting with the best validation accuracy." if a.several_settings else ""
    table = glance_table(chosen)
    table.insert(5, "final test acc", chosen["final_acc_mean"].map(num).to_numpy())
    blocks: list[Block] = [
        Heading("Results per task"),
        Table(
            table,
            "The five questions as columns. Accuracy over the runs that did not diverge; drawdown in "
            "accuracy points; dead, lost and dead-at-end are mean fractions of units over layers; grad ratio "
            "= head over first-layer weight-gradient norm (geometric mean over seeds). Matched width: the width "
            "model.match_params matches, named (the MLP's units, the CNN's channels, the RNN's hidden size, the "
            "transformer's FFN width d_ff)." + note,
        ),
        Heading("Per layer", 3),
        Table(
            layer_display(a),
            "Means over seeds at each activation's chosen setting; gradient norms are geometric means.",
        ),
    ]
    if a.several_settings:
        several = a.summary.groupby("task")["setting"].transform("nunique") > 1
        blocks += [
            Heading("Settings", 3),
            Table(display_settings(a.summary[several])),
            Table(glance_table(a.summary[several]), "Every setting: the five questions per setting."),
            *figure_blocks(drawn, ["accuracy_by_setting"]),
        ]
    return blocks


def layer_display(a: Analysis) -> pd.DataFrame:
    from harness.report.axes import geometric_mean

    assert a.data.layers is not None  # gather leaves layers unset only without runs, and no report is made then
    layers = a.data.layers[a.data.layers["run_dir"].isin(a.tuned["run_dir"])]
    g = layers.groupby(["task", "act", "depth", "layer"], sort=True)
    out = g[["dead_init", "lost", "dead_end"]].mean().join(g[["grad_init", "grad_train"]].agg(geometric_mean))
    out = out.reset_index()
    return pd.DataFrame(
        {
            "task": out["task"],
            "activation": out["act"],
            "layer": out["layer"],
            "dead at init": out["dead_init"].map(percent),
            "lost in training": out["lost"].map(lambda v: "n/a" if pd.isna(v) else percent(v)),
            "dead at end": out["dead_end"].map(percent),
            "‖∇W‖ at init": out["grad_init"].map(lambda v: f"{v:.3g}"),
            "‖∇W‖ training": out["grad_train"].map(lambda v: f"{v:.3g}"),
        }
    )


def display_settings(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": s["task"],
            "activation": s["act"],
            "setting": s["setting"],
            "seeds": s["seeds"],
            "diverged": [f"{d}/{n}" for d, n in zip(s["diverged"], s["seeds"])],
            "val acc (selects)": s["val_acc_mean"].map(num),
            "test acc at best val [95% CI]": [
                with_ci(m, lo, hi) for m, lo, hi in zip(s["acc_mean"], s["acc_ci_low"], s["acc_ci_high"])
            ],
            "chosen": edges.chosen_marks(s),  # a rate chosen at its grid's edge says so, and what to try next
        }
    ).reset_index(drop=True)


def comparison_blocks(a: Analysis) -> list[Block]:
    text = (
        f"Each activation minus {a.baseline} on the same seed (runs where either diverged are left out). "
        "p-values are two-sided, Holm-corrected across the m activations compared within a task and setting: "
        "a paired t-test, and an exact sign-flip permutation test that assumes nothing about the distribution "
        "but cannot go below 2/2^n with n pairs. The adjusted interval is Bonferroni's (level 1 - 0.05/m), so it "
        "excludes 0 only when the comparison is significant; Holm, which is more powerful, may call a comparison "
        "significant whose Bonferroni interval touches 0 (the note says so). The uncorrected interval is the "
        "plain 95% interval of the one comparison, for reading alone. d_z is the mean difference over its "
        f"standard deviation. 'significant' means the Holm-corrected t-test p < {stats.ALPHA}."
    )
    if a.comparison.empty:
        return [Heading(f"Against {a.baseline}"), Text(f"No task has both {a.baseline} and another activation.")]
    c = a.comparison
    table = pd.DataFrame({"task": c["task"]})
    if a.several_settings:
        table["setting"] = c["setting"]
    table["activation"] = c["act"]
    table["pairs"] = c["pairs"]
    table[f"Δ acc vs {a.baseline}"] = c["diff_mean"].map(num)
    table["95% CI, Bonferroni-adjusted"] = [
        f"[{num(lo)}, {num(hi)}] (m = {m})" if pd.notna(lo) else "–"
        for lo, hi, m in zip(c["diff_adj_low"], c["diff_adj_high"], c["family"])
    ]
    table["p t-test (Holm)"] = c["p_t_holm"].map(p_value)
    table["significant"] = c["significant"].map({True: "yes", False: "no"})
    table["95% CI, uncorrected"] = [
        f"[{num(lo)}, {num(hi)}]" if pd.notna(lo) else "–" for lo, hi in zip(c["diff_ci_low"], c["diff_ci_high"])
    ]
    table["p sign-flip (Holm)"] = c["p_perm_holm"].map(p_value)
    table["d_z"] = c["effect_dz"].map(lambda v: num(v, 2))
    table["note"] = c["note"]
    return [Heading(f"Against {a.baseline}"), Text(text), Table(table)]


def rank_blocks(a: Analysis, drawn: dict[str, Path | str]) -> list[Block]:
    f = a.friedman
    blocks: list[Block] = [Heading("Across tasks")]
    if f["activations"] < 2 or f["tasks"] < 1:
        return blocks + [Text("Too few activations present in every task to rank.")]
    means = a.means.map(num).reset_index()
    blocks.append(
        Table(
            means,
            "Mean test accuracy per task (dataset x model), each activation at its chosen "
            "setting (activations present in every task). Settings are never ranked as tasks.",
        )
    )
    ranks = a.ranks.assign(mean_rank=a.ranks["mean_rank"].map(lambda v: num(v, 2)))
    blocks.append(Table(ranks.rename(columns={"act": "activation", "mean_rank": "average rank (1 = best)"})))
    if pd.notna(f["p"]):
        blocks.append(
            Text(
                f"Friedman test over {f['tasks']} tasks and {f['activations']} activations: chi² = "
                f"{f['statistic']:.2f}, p = {p_value(f['p'])}; Nemenyi critical difference of average "
                f"ranks at 5%: {f['cd']:.2f}. {f['note']}".strip()
            )
        )
    else:
        blocks.append(Text(f"No Friedman test: {f['note']}."))
    return blocks + figure_blocks(drawn, ["critical_difference"])


def gallery_blocks(properties: pd.DataFrame, drawn: dict[str, Path | str]) -> list[Block]:
    if properties.empty:
        return []
    from harness.report.gallery import display

    shown = display(properties)
    text = (
        "Computed numerically from each function, not typed in: range over z in [-10, 10] and far out (∞ when "
        "still growing at 10^4); monotonic = never decreasing; zero-centred = |E f(z)| < 0.05 for standard "
        "normal z; smooth = f' has no jump; zero-gradient region = where f' is exactly 0. Softmax is taken on "
        "the pair (z, 0), where it equals the sigmoid."
    )
    learnt = figure_blocks(drawn, ["learnt_shapes"])  # learnable activations only (harness/report/learnt_gallery.py)
    return [Heading("Activation gallery"), *figure_blocks(drawn, ["gallery"]), Text(text), Table(shown), *learnt]


def skipped_blocks(a: Analysis, paths: list[Path]) -> list[Block]:
    skipped = a.data.skipped
    if skipped.empty:
        return [Heading("Skipped runs"), Text("None: every run folder found was used.")]
    root = Path(os.path.commonpath([p.resolve() for p in paths]))
    shown = skipped.assign(run_dir=[relative(d, root) for d in skipped["run_dir"]])
    return [Heading("Skipped runs"), Table(shown.rename(columns={"run_dir": "run folder"}))]


def relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return path


def method_blocks(a: Analysis) -> list[Block]:
    return [
        Heading("How the numbers are made"),
        Bullets(
            [
                "A task is a dataset x model; every other key that differs between its runs (learning rate, init, "
                "depth, ...) is a setting within the task. An activation's label carries its parameters when they "
                "differ.",
                "Diverged runs (a loss that turned NaN or Inf) count in the divergence rate and are left out of "
                "accuracy, loss and speed; a table row that lost runs says so in its note.",
                f"Rows with fewer than {stats.FEW_SEEDS} seeds are flagged; with one usable seed there is no interval.",
                "When several settings were run, each activation is compared at its own setting, chosen on validation "
                "only: the best mean best-validation accuracy (over the seeds that did not diverge) among the "
                "settings where no seed diverged or ended at chance (final validation accuracy at most "
                f"{stats.CHANCE_MARGIN:g} x 1/classes), or, if every setting has such a seed, among those with the "
                "fewest; ties go to the smaller learning rate. So no activation is judged at a setting that suits "
                "another; the comparisons at each shared setting follow in the same table.",
                "Average ranks and the Friedman test use the mean accuracy of each activation per task, at its chosen "
                f"setting; the critical-difference diagram is drawn from {stats.MIN_TASKS_CD} tasks on.",
                "Drawdown: the largest fall of validation accuracy below its running best over a run. Dead at init: "
                "units with f'(z) = 0 on every probe sample at step 0; lost: alive at step 0 and dead at the end "
                "(per unit, from the trainer's masks; n/a for runs that predate them). Gradient-flow ratio: the "
                "head's weight-gradient norm over the first hidden layer's, at step 0 and averaged over training's "
                "logged steps.",
                compute_line(a.data.runs),
                "Raw numbers: summary.csv (every task x activation x setting), layers.csv (every run x layer), "
                "comparison.csv, ranks.csv, task_means.csv, friedman.json, properties.csv, cost.csv and skipped.csv "
                "beside this report; tables.tex with --latex.",
            ]
        ),
    ]


def columns_blocks() -> list[Block]:
    """What each results-table column means, from the metric registry (harness.common.metrics)."""
    better = {"higher": "higher is better", "lower": "lower is better", None: "best near 1"}
    neither = "neither higher nor lower is better in itself"  # activation sparsity: what sparse units trade
    lines = [
        f"{m.label}: {m.meaning} ({'geometric mean' if m.geometric else 'mean'} over seeds; "
        f"{neither if m.better is None and m.fmt != 'ratio' else better[m.better]})."
        for m in metrics.in_table()
    ]
    return [Heading("What each column means"), Bullets(lines)]
