"""Build a comparison report from any folders of runs: CSV tables, seaborn figures, report.md and report.html."""
from __future__ import annotations

import datetime
import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from harness.report import ReportError, stats
from harness.report.analysis import Analysis, analyse, plain_summary
from harness.report.load import gather
from harness.report.render import (
    Block,
    Bullets,
    Figure,
    Heading,
    Table,
    Text,
    num,
    p_value,
    percent,
    rate,
    to_html,
    to_markdown,
    with_ci,
)

TITLE = "Activation comparison"
HEADLINE = ("Headline metric: test accuracy at the step of best validation accuracy (model selection never looks "
            "at the test split). Intervals are 95% Student-t intervals of the mean across seeds.")


def default_out(paths: list[Path]) -> Path:
    """A report/ folder beside the runs: inside the one path given, or in the folder the paths share."""
    resolved = [p.resolve() for p in paths]
    return Path(os.path.commonpath(resolved)) / "report"


def build_report(paths: list[str | Path], baseline: str | None = None, out: str | Path | None = None,
                 figures: bool = True) -> Path:
    """Write report.md, report.html, summary.csv, the other tables and figures/*.png; return the output folder.

    Raises ReportError (one line) for a path that does not exist, no usable runs, or an unknown baseline.
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise ReportError(f"no such file or folder: {p}")
    data = gather(paths)
    if data.runs.empty:
        found = f"; {len(data.skipped)} run folder(s) found, none usable" if len(data.skipped) else ""
        first = f" (e.g. {data.skipped['reason'].iloc[0]})" if len(data.skipped) else ""
        raise ReportError(f"no finished runs under {', '.join(map(str, paths))}{found}{first}")
    a = analyse(data, baseline)
    out = Path(out) if out is not None else default_out(paths)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot write the report to {out}: {exc}") from None
    for old in (out / "figures").glob("*.png"):  # figures/ is the report's own: no stale figure survives a rerun
        old.unlink()
    write_tables(a, out)
    from harness.report.gallery import property_table

    gallery = report_activations(a)
    properties = property_table(gallery) if gallery else pd.DataFrame()
    properties.to_csv(out / "properties.csv", index=False)
    drawn = draw_figures(a, gallery, out / "figures") if figures else {}
    blocks = report_blocks(a, paths, properties, drawn)
    (out / "report.md").write_text(to_markdown(TITLE, blocks, out), encoding="utf-8")
    (out / "report.html").write_text(to_html(TITLE, blocks), encoding="utf-8")
    return out


def write_tables(a: Analysis, out: Path) -> None:
    """The raw numbers, unrounded, for anyone who wants to check or replot them."""
    a.summary.to_csv(out / "summary.csv", index=False)
    a.comparison.to_csv(out / "comparison.csv", index=False)
    a.ranks.to_csv(out / "ranks.csv", index=False)
    a.means.to_csv(out / "task_means.csv")
    friedman = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in a.friedman.items()}  # valid JSON
    (out / "friedman.json").write_text(json.dumps(friedman, indent=2) + "\n", encoding="utf-8")
    a.data.skipped.to_csv(out / "skipped.csv", index=False)


def report_activations(a: Analysis) -> list[tuple[str, str, dict]]:
    """(label, registry name, parameters) of each activation in the report that the registry can build."""
    from harness.activations import ACTIVATIONS

    found = []
    for act, group in a.data.runs.groupby("act", sort=False):
        summary = json.loads((Path(group["run_dir"].iloc[0]) / "summary.json").read_text(encoding="utf-8"))
        config = summary.get("config", {})
        params = dict(config.get("activation") or {"name": group["activation"].iloc[0]})
        name = params.pop("name", None)
        if name in ACTIVATIONS:  # `custom` points at user code the report need not import
            found.append((act, name, params))
    order = list(palette_for(a))
    return sorted(found, key=lambda item: order.index(item[0]))


def palette_for(a: Analysis) -> dict:
    from harness.report.figures import palette

    return palette(sorted(a.data.runs["act"].unique()), a.baseline)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def draw_figures(a: Analysis, gallery: list, folder: Path) -> dict[str, Path | str]:
    """Every figure; a figure that cannot be drawn becomes a line in the report instead of a crash."""
    from harness.report import figures as fig
    from harness.report.gallery import plot as plot_gallery

    colours = palette_for(a)
    tuned_runs = set(a.tuned["run_dir"])
    metrics = a.data.metrics[a.data.metrics["run_dir"].isin(tuned_runs)]
    chosen = a.summary[a.summary["chosen"]]
    jobs = {"learning_curves": lambda p: fig.learning_curves(metrics, colours, p)}
    for task, m in metrics.groupby("task", sort=True):
        s = slug(task)
        jobs[f"{s}_units"] = lambda p, m=m: fig.units(m, colours, p)
        jobs[f"{s}_activations"] = lambda p, m=m: fig.activation_stats(m, colours, p)
        jobs[f"{s}_gradients"] = lambda p, m=m: fig.gradients_by_depth(m, colours, p)
        jobs[f"{s}_gradient_heatmap"] = lambda p, m=m: fig.gradient_heatmap(m, colours, p)
        if (m["metric"] == "grad_norm_h").any():
            jobs[f"{s}_through_time"] = lambda p, m=m: fig.through_time(m, colours, p)
    jobs["speed"] = lambda p: fig.relative_speed(a.tuned, a.baseline, colours, p)
    jobs["accuracy_vs_speed"] = lambda p: fig.accuracy_vs_speed(chosen, a.tuned, colours, p)
    if a.several_lrs:
        choice = chosen[["task", "act", "lr"]]
        several = a.summary[a.summary.groupby("task")["lr"].transform("nunique") > 1]  # tasks that tried several
        jobs["accuracy_vs_lr"] = lambda p: fig.accuracy_vs_lr(several, choice, colours, p)
    if a.friedman["tasks"] >= stats.MIN_TASKS_CD and len(a.ranks) >= 3:
        jobs["critical_difference"] = lambda p: fig.critical_difference(a.ranks, a.friedman["cd"], colours, p)
    if gallery:
        jobs["gallery"] = lambda p: plot_gallery(gallery, p, colours)
    drawn = {}
    for name, draw in jobs.items():
        try:
            drawn[name] = draw(folder / f"{name}.png")
        except Exception as exc:  # one bad figure must not cost the reader the rest of the report
            drawn[name] = f"could not be drawn: {type(exc).__name__}: {exc}"
    return drawn


# ---- the report's text, in reading order

CAPTIONS = {
    "learning_curves": "Learning curves. Training loss, validation loss and validation accuracy against step, one "
    "row per task; lines are means across seeds, bands their 95% interval. Curves that separate early and stay "
    "apart are a real difference; bands that overlap throughout are not.",
    "units": "Dead and saturated units per layer over training (step 0 = initialisation). A dead unit has f'(z) = 0 "
    "on every probe sample, a saturated one |f'(z)| < 0.5% of max|f'|; both no longer learn. A line that climbs "
    "means units are being lost as training goes on; activations that lose none lie on top of each other at 0.",
    "activations": "Mean and standard deviation of each activation layer's output over training (Glorot and "
    "Bengio, 2010). A mean far from 0 shifts the next layer's input; a standard deviation that shrinks layer by "
    "layer towards 0 means the signal is dying out with depth, one that grows means it is exploding.",
    "gradients": "Weight-gradient norm per layer (input layer on the left, head on the right) at initialisation, "
    "averaged over training, and at the end, on a log scale. Lines that fall steeply towards the input layers are "
    "vanishing gradients; lines that rise are exploding ones. Flat is healthy.",
    "gradient_heatmap": "Gradient norm per layer (rows, input at the top) and training step (columns), one panel per "
    "activation, on one shared log colour scale. Dark rows are layers that barely learn.",
    "through_time": "Recurrent network: norm of the gradient of the loss with respect to the hidden state at each "
    "time step t, at initialisation and at the end. A curve that drops towards early time steps means the "
    "gradient vanishes through time, so the network cannot learn long-range dependencies.",
    "speed": "Training speed relative to the baseline (samples/s over the baseline's median samples/s in the same "
    "task; 1 = as fast, below 1 = slower). Bars are medians, dots single runs: widely scattered dots mean the "
    "machine was busy and small differences are noise.",
    "accuracy_vs_speed": "Accuracy against speed, one point per activation with 95% intervals on both axes. "
    "Up and to the right is better; an activation to the lower left of another is dominated by it.",
    "accuracy_vs_lr": "Accuracy against learning rate per activation, with 95% intervals; the learning rate chosen on "
    "validation accuracy is ringed. An activation that only does well at one learning rate is fragile; compare "
    "activations at their own best learning rate, not at one shared value.",
    "critical_difference": "Critical-difference diagram (Demšar, 2006): average rank across tasks, 1 = best. A thick "
    "bar joins activations whose ranks differ by less than the critical difference, i.e. not significantly "
    "different by the Nemenyi test at 5%.",
    "gallery": "Each activation f(x) (solid) and its derivative f'(x) (dashed) on x in [-5, 5] (ReLU6 to 10), as "
    "the reference article draws them.",
}


def caption(name: str) -> str:
    """The caption of a figure file name such as 'mnist1d-mlp_units'."""
    return CAPTIONS.get(name, CAPTIONS.get(name.rsplit("_", 1)[-1], CAPTIONS.get(name.split("_", 1)[-1], "")))


def figure_blocks(drawn: dict, names: list[str]) -> list[Block]:
    blocks = []
    for name in names:
        if name not in drawn:
            continue
        result = drawn[name]
        blocks.append(Figure(result, caption(name)) if isinstance(result, Path) else Text(f"{name}: {result}"))
    return blocks


def report_blocks(a: Analysis, paths: list[Path], properties: pd.DataFrame, drawn: dict) -> list[Block]:
    runs = a.data.runs
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    intro = (f"{len(runs)} runs ({runs['task'].nunique()} task(s), {runs['act'].nunique()} activation(s), seeds "
             f"{', '.join(map(str, sorted(runs['seed'].unique())))}) from {', '.join(map(str, paths))}; made {when}. "
             f"Baseline: {a.baseline}. {HEADLINE}")
    blocks: list[Block] = [Heading("Summary"), Bullets(plain_summary(a)), Heading("The runs"), Text(intro)]
    if a.baseline_note:
        blocks.append(Text(a.baseline_note))
    blocks += results_blocks(a, drawn) + comparison_blocks(a) + rank_blocks(a, drawn)
    blocks += [Heading("Training"), *figure_blocks(drawn, ["learning_curves"])]
    for task in sorted(runs["task"].unique()):
        names = [f"{slug(task)}_{kind}" for kind in
                 ["units", "activations", "gradients", "gradient_heatmap", "through_time"]]
        if any(n in drawn for n in names):
            blocks += [Heading(f"Inside the network: {task}", 3), *figure_blocks(drawn, names)]
    blocks += [Heading("Speed"), *figure_blocks(drawn, ["speed", "accuracy_vs_speed"])]
    if not drawn:
        blocks.append(Text("Figures were not drawn (figures=False)."))
    blocks += gallery_blocks(properties, drawn) + skipped_blocks(a, paths) + method_blocks(a)
    return blocks


def results_blocks(a: Analysis, drawn: dict) -> list[Block]:
    chosen = a.summary[a.summary["chosen"]]
    lr_note = " Each activation at its learning rate with the best validation accuracy." if a.several_lrs else ""
    blocks = [Heading("Results per task"),
              Table(display_summary(chosen, a.several_lrs), "Accuracy over the runs that did not diverge; samples/s "
                    "is training throughput; dead and saturated are the mean fractions of units at the end." + lr_note)]
    if a.several_lrs:
        several = a.summary.groupby("task")["lr"].transform("nunique") > 1
        blocks += [Heading("Learning rates", 3), Table(display_lrs(a.summary[several])),
                   *figure_blocks(drawn, ["accuracy_vs_lr"])]
    return blocks


def display_summary(s: pd.DataFrame, show_lr: bool) -> pd.DataFrame:
    out = pd.DataFrame({"task": s["task"], "activation": s["act"]})
    if show_lr:
        out["lr"] = s["lr"].map(lambda v: f"{v:g}")
    out["seeds"] = s["seeds"]
    out["diverged"] = [f"{d}/{n}" for d, n in zip(s["diverged"], s["seeds"])]
    out["test acc at best val [95% CI]"] = [with_ci(m, lo, hi) for m, lo, hi in
                                             zip(s["acc_mean"], s["acc_ci_low"], s["acc_ci_high"])]
    out["sd"] = s["acc_sd"].map(num)
    out["final test acc [95% CI]"] = [with_ci(m, lo, hi) for m, lo, hi in
                                      zip(s["final_acc_mean"], s["final_acc_ci_low"], s["final_acc_ci_high"])]
    out["final train loss"] = s["train_loss_mean"].map(num)
    # Throughput is skewed by warm-up and busy machines: mean ± sd here; the CI is in summary.csv.
    out["samples/s (mean ± sd)"] = [f"{rate(m)} ± {rate(sd)}" if pd.notna(sd) else rate(m)
                                    for m, sd in zip(s["samples_per_s_mean"], s["samples_per_s_sd"])]
    out["dead"] = s["dead_mean"].map(percent)
    out["saturated"] = s["saturated_mean"].map(percent)
    out["note"] = s["note"]
    return out.reset_index(drop=True)


def display_lrs(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "task": s["task"], "activation": s["act"], "lr": s["lr"].map(lambda v: f"{v:g}"), "seeds": s["seeds"],
        "diverged": [f"{d}/{n}" for d, n in zip(s["diverged"], s["seeds"])],
        "val acc (selects)": s["val_acc_mean"].map(num),
        "test acc at best val [95% CI]": [with_ci(m, lo, hi) for m, lo, hi in
                                          zip(s["acc_mean"], s["acc_ci_low"], s["acc_ci_high"])],
        "chosen": s["chosen"].map({True: "yes", False: ""}),
    }).reset_index(drop=True)


def comparison_blocks(a: Analysis) -> list[Block]:
    text = (f"Each activation minus {a.baseline} on the same seed (runs where either diverged are left out). "
            "p-values are two-sided, Holm-corrected across the activations compared within a task and setting: "
            "a paired t-test, and an exact sign-flip permutation test that assumes nothing about the distribution "
            "but cannot go below 2/2^n with n pairs. d_z is the mean difference over its standard deviation. "
            f"'significant' means the Holm-corrected t-test p < {stats.ALPHA}.")
    if a.comparison.empty:
        return [Heading(f"Against {a.baseline}"), Text(f"No task has both {a.baseline} and another activation.")]
    c = a.comparison
    table = pd.DataFrame({"task": c["task"]})
    if a.several_lrs:
        table["setting"] = c["setting"]
    table["activation"] = c["act"]
    table["pairs"] = c["pairs"]
    table[f"Δ acc vs {a.baseline} [95% CI]"] = [
        with_ci(m, lo, hi) for m, lo, hi in zip(c["diff_mean"], c["diff_ci_low"], c["diff_ci_high"])]
    table["p t-test (Holm)"] = c["p_t_holm"].map(p_value)
    table["p sign-flip (Holm)"] = c["p_perm_holm"].map(p_value)
    table["d_z"] = c["effect_dz"].map(lambda v: num(v, 2))
    table["significant"] = c["significant"].map({True: "yes", False: "no"})
    table["note"] = c["note"]
    return [Heading(f"Against {a.baseline}"), Text(text), Table(table)]


def rank_blocks(a: Analysis, drawn: dict) -> list[Block]:
    f = a.friedman
    blocks = [Heading("Across tasks")]
    if f["activations"] < 2 or f["tasks"] < 1:
        return blocks + [Text("Too few activations present in every task to rank.")]
    means = a.means.map(num).reset_index()
    blocks.append(Table(means, "Mean test accuracy at best validation per task (activations present in every task)."))
    ranks = a.ranks.assign(mean_rank=a.ranks["mean_rank"].map(lambda v: num(v, 2)))
    blocks.append(Table(ranks.rename(columns={"act": "activation", "mean_rank": "average rank (1 = best)"})))
    if pd.notna(f["p"]):
        blocks.append(Text(f"Friedman test over {f['tasks']} tasks and {f['activations']} activations: chi² = "
                           f"{f['statistic']:.2f}, p = {p_value(f['p'])}; Nemenyi critical difference of average "
                           f"ranks at 5%: {f['cd']:.2f}. {f['note']}".strip()))
    else:
        blocks.append(Text(f"No Friedman test: {f['note']}."))
    return blocks + figure_blocks(drawn, ["critical_difference"])


def gallery_blocks(properties: pd.DataFrame, drawn: dict) -> list[Block]:
    if properties.empty:
        return []
    from harness.report.gallery import display

    shown = display(properties)
    text = ("Computed numerically from each function, not typed in: range over z in [-10, 10] and far out (∞ when "
            "still growing at 10^4); monotonic = never decreasing; zero-centred = |E f(z)| < 0.05 for standard "
            "normal z; smooth = f' has no jump; zero-gradient region = where f' is exactly 0. Softmax is taken on "
            "the pair (z, 0), where it equals the sigmoid.")
    return [Heading("Activation gallery"), *figure_blocks(drawn, ["gallery"]), Text(text), Table(shown)]


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
    return [Heading("How the numbers are made"), Bullets([
        "A task is a dataset x model (plus any other setting that differs between the runs); an activation's "
        "label carries its parameters when they differ between runs.",
        "Diverged runs (a loss that turned NaN or Inf) count in the divergence rate and are left out of accuracy, "
        "loss and speed; a table row that lost runs says so in its note.",
        f"Rows with fewer than {stats.FEW_SEEDS} seeds are flagged; with one usable seed there is no interval.",
        "When several learning rates were run, each activation is compared at its own learning rate with the best "
        "mean validation accuracy (among those where no seed diverged), so that no activation is judged at a "
        "learning rate that suits another; the comparisons at each shared learning rate follow in the same table.",
        "Average ranks and the Friedman test use the mean accuracy of each activation per task; the "
        f"critical-difference diagram is drawn from {stats.MIN_TASKS_CD} tasks on.",
        "Raw numbers: summary.csv (every task x activation x learning rate), comparison.csv, ranks.csv, "
        "task_means.csv, friedman.json, properties.csv and skipped.csv beside this report.",
    ])]
