"""Build a comparison report from any folders of runs: CSV tables, figures, report.md, report.html, tables.tex."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.common.outputs import SymlinkRefused, refuse_symlink, refuse_symlinks
from harness.records.results import atomic_write, read_summary
from harness.report import cost, cost_text, stats
from harness.report.analysis import Analysis, analyse, plain_summary
from harness.report.errors import ReportError
from harness.report.headline import QUESTIONS, first_screen
from harness.report.load import gather
from harness.report.render import (
    Block,
    Bullets,
    Heading,
    Text,
    clip_differences,
    clip_intervals,
    to_html,
    to_markdown,
)
from harness.report.sections import (
    columns_blocks,
    comparison_blocks,
    figure_blocks,
    gallery_blocks,
    method_blocks,
    rank_blocks,
    results_blocks,
    skipped_blocks,
)
from harness.report.shown import shown_analysis, shown_label

if TYPE_CHECKING:
    from harness.report.gallery import Item  # gallery imports torch: only when the gallery is drawn

TITLE = "Activation comparison"
# What a report writes in its folder: none of these, nor figures/ or a figure in it, may be a symlink (and the
# report/ folder itself, unless the user named it with --out): the report never writes or deletes through one.
OUTPUTS = (
    "report.md",
    "report.html",
    "summary.csv",
    "layers.csv",
    "comparison.csv",
    "ranks.csv",
    "task_means.csv",
    "friedman.json",
    "skipped.csv",
    "properties.csv",
    "cost.csv",
    "tables.tex",
    "figures",
)
HEADLINE = (
    "Headline metric: test accuracy at the step of best validation accuracy (model selection never looks "
    "at the test split). Intervals are 95% Student-t intervals of the mean across seeds."
)


def default_out(paths: list[Path]) -> Path:
    """A report/ folder beside the runs: inside the one path given, or in the folder the paths share."""
    resolved = [p.resolve() for p in paths]
    return Path(os.path.commonpath(resolved)) / "report"


def build_report(
    paths: Sequence[str | Path],
    baseline: str | None = None,
    out: str | Path | None = None,
    figures: bool = True,
    latex: bool = False,
) -> Path:
    """Write report.md, report.html, summary.csv, the other tables, figures/*.png (and tables.tex with latex);
    return the output folder.

    Raises ReportError (one line) for a path that does not exist, no usable runs, or an unknown baseline.
    """
    folders = [Path(p) for p in paths]
    for p in folders:
        if not p.exists():
            raise ReportError(f"no such file or folder: {p}")
    data = gather(folders)
    if data.runs.empty:
        found = f"; {len(data.skipped)} run folder(s) found, none usable" if len(data.skipped) else ""
        first = f" (e.g. {data.skipped['reason'].iloc[0]})" if len(data.skipped) else ""
        raise ReportError(f"no finished runs under {', '.join(map(str, folders))}{found}{first}")
    data = cost.attach(data, folders)  # the cost probe's records: the report's only speed and memory figures
    a = analyse(data, baseline)
    out, stale = prepare_out(Path(out) if out is not None else default_out(folders), given=out is not None)
    try:
        write_report(a, folders, out, figures, latex)
    except SymlinkRefused as exc:  # made after the check above: still refused, still one line
        raise ReportError(str(exc)) from None
    remove_stale(stale)
    return out


def prepare_out(out: Path, given: bool) -> tuple[Path, dict[Path, int]]:
    """The output folder and the figures already in its figures/ (path: inode); ReportError (one line) when it
    cannot be used or a symlink stands where the report writes (harness.common.outputs): nothing is written or deleted
    then."""
    try:
        if not given:
            refuse_symlink(out)  # <runs>/report is the report's own folder; a folder given with --out is followed
        refuse_symlinks(out, OUTPUTS)
        stale = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
        refuse_symlinks(out / "figures", [p.name for p in stale])
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except SymlinkRefused as exc:
        raise ReportError(str(exc)) from None
    except OSError as exc:
        raise ReportError(f"cannot write the report to {out}: {exc}") from None
    return out, {p: p.stat().st_ino for p in stale}


def remove_stale(stale: dict[Path, int]) -> None:
    """figures/ is the report's own: no stale figure survives a rerun. Removed only once the new report.md and
    report.html are in place, so that a report stopped midway never links a figure already gone; a figure this run
    drew again was replaced atomically (a new inode) and stays."""
    for path, inode in stale.items():
        try:
            if path.stat().st_ino == inode:
                path.unlink()
        except FileNotFoundError:
            pass


def write_report(a: Analysis, paths: list[Path], out: Path, figures: bool, latex: bool) -> None:
    """The tables (the data, names whole), then what people read (names shown clean and cut: shown.py)."""
    write_tables(a, out, paths)
    from harness.report.gallery import property_table

    gallery = report_activations(a)
    properties = property_table(gallery) if gallery else pd.DataFrame()
    write_csv(properties, out / "properties.csv")
    a = shown_analysis(a)
    # shown inside each metric's range (render.RANGES); the CSV tables above keep the intervals as computed
    a = dataclasses.replace(a, summary=clip_intervals(a.summary), comparison=clip_differences(a.comparison))
    gallery = [(shown_label(label), name, params) for label, name, params in gallery]
    if latex:
        from harness.report.latex import write_latex

        write_latex(a, out / "tables.tex")
    drawn = draw_figures(a, gallery, out / "figures") if figures else {}
    plots = interactive_figures(a) if figures else {}
    blocks = report_blocks(a, paths, properties, drawn, plots)
    write_text(out / "report.md", to_markdown(TITLE, blocks, out))
    script = ""
    if plots:
        from harness.report.interactive import plotly_script

        script = plotly_script()
    write_text(out / "report.html", to_html(TITLE, blocks, script))


def write_text(path: Path, text: str) -> None:
    """UTF-8 text, atomically (harness.records.results.atomic_write refuses a symlink at path)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), binary=True)


def write_csv(frame: pd.DataFrame, path: Path, index: bool = False) -> None:
    write_text(path, frame.to_csv(index=index))


def portable(frame: pd.DataFrame, base: Path) -> pd.DataFrame:
    """run_dir relative to base (the folder above the report's inputs), so a committed table names no machine path."""
    if "run_dir" not in frame or frame.empty:
        return frame
    return frame.assign(
        run_dir=[
            os.path.relpath(q, base) if (q := Path(p).resolve()).is_relative_to(base) else q.name
            for p in frame["run_dir"]
        ]
    )


def write_tables(a: Analysis, out: Path, paths: list[Path]) -> None:
    """The raw numbers, unrounded, for anyone who wants to check or replot them."""
    base = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    write_csv(a.summary, out / "summary.csv")
    write_csv(portable(a.data.layers, base), out / "layers.csv")
    write_csv(a.comparison, out / "comparison.csv")
    write_csv(a.ranks, out / "ranks.csv")
    write_csv(a.means, out / "task_means.csv", index=True)
    friedman = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in a.friedman.items()}  # valid JSON
    write_text(out / "friedman.json", json.dumps(friedman, indent=2) + "\n")
    write_csv(portable(a.data.skipped, base), out / "skipped.csv")
    write_csv(cost.cost_table(a.data.costs, a.tuned, a.baseline), out / "cost.csv")


def report_activations(a: Analysis) -> list[Item]:
    """(label, registry name, parameters) of each activation in the report that the registry can build."""
    from harness.networks.activations import ACTIVATIONS

    found = []
    for act, group in a.data.runs.groupby("act", sort=False):
        summary = read_summary(group["run_dir"].iloc[0])  # read and checked once already by gather
        config = summary.get("config") or {}
        params = dict(config.get("activation") or {"name": group["activation"].iloc[0]})
        name = params.pop("name", None)
        if name in ACTIVATIONS:  # `custom` points at user code the report need not import
            found.append((act, name, params))
    order = list(palette_for(a))
    return sorted(found, key=lambda item: order.index(item[0]))


def palette_for(a: Analysis) -> dict[str, tuple]:
    from harness.report.figures import palette

    return palette(sorted(a.data.runs["act"].unique()), a.baseline)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def tuned_parts(a: Analysis, task: str) -> dict[str, pd.DataFrame]:
    """The runs, metrics and layer rows of one task at each activation's chosen setting."""
    keep = set(a.tuned.loc[a.tuned["task"] == task, "run_dir"])
    assert a.data.layers is not None  # gather leaves layers unset only without runs, and build_report stops there
    costs = cost.cost_table(a.data.costs, a.tuned, a.baseline)
    return {
        "cost": costs[costs["task"] == task],
        "runs": a.tuned[a.tuned["task"] == task],
        "metrics": a.data.metrics[a.data.metrics["run_dir"].isin(keep)],
        "layers": a.data.layers[a.data.layers["run_dir"].isin(keep)],
    }


def draw_figures(a: Analysis, gallery: list[Item], folder: Path) -> dict[str, Path | str]:
    """Every static figure; a figure that cannot be drawn becomes a line in the report instead of a crash."""
    from harness.report import figures as fig
    from harness.report import summary_figures
    from harness.report.gallery import plot as plot_gallery
    from harness.report.learnt_gallery import learnt_job
    from harness.report.overview import overview

    colours = palette_for(a)
    metrics = a.data.metrics[a.data.metrics["run_dir"].isin(set(a.tuned["run_dir"]))]
    jobs: dict[str, Callable[..., Path]] = {}  # figure name -> draw(path), its data bound as default arguments
    for task in sorted(a.tuned["task"].unique()):
        parts = tuned_parts(a, task)
        jobs[f"{slug(task)}_overview"] = lambda p, t=parts: overview(
            t["runs"], t["metrics"], t["layers"], colours, p, t["cost"]
        )
    jobs["learning_curves"] = lambda p: fig.learning_curves(metrics, colours, p)
    for task, m in metrics.groupby("task", sort=True):
        s = slug(task)
        jobs[f"{s}_units"] = lambda p, m=m: fig.units(m, colours, p)
        jobs[f"{s}_activations"] = lambda p, m=m: fig.activation_stats(m, colours, p)
        jobs[f"{s}_gradients"] = lambda p, m=m: fig.gradients_by_depth(m, colours, p)
        jobs[f"{s}_gradient_heatmap"] = lambda p, m=m: fig.gradient_heatmap(m, colours, p)
        if (m["metric"] == "grad_norm_h").any():
            jobs[f"{s}_through_time"] = lambda p, m=m: fig.through_time(m, colours, p)
    costs = cost.cost_table(a.data.costs, a.tuned, a.baseline)
    if not costs.empty:  # no probe records: no cost figure (the runs' own timing is never drawn)
        from harness.report import cost_figures

        points = cost.accuracy_points(costs, a.summary)
        jobs["cost"] = lambda p: cost_figures.relative_cost(costs, a.baseline, colours, p)
        jobs["accuracy_vs_cost"] = lambda p: cost_figures.accuracy_vs_cost(points, colours, p)
    if a.several_settings:
        several = a.summary[a.summary.groupby("task")["setting"].transform("nunique") > 1]
        jobs["accuracy_by_setting"] = lambda p: summary_figures.accuracy_by_setting(several, colours, p)
    if a.friedman["tasks"] >= stats.MIN_TASKS_CD and len(a.ranks) >= 3:
        from harness.report.cd_diagram import critical_difference

        jobs["critical_difference"] = lambda p: critical_difference(a.ranks, a.friedman["cd"], colours, p)
    if gallery:
        jobs["gallery"] = lambda p: plot_gallery(gallery, p, colours)
        if learnt := learnt_job(gallery, a.tuned, colours):  # learnable activations: f, f' at init and learnt
            jobs["learnt_shapes"] = learnt
    drawn: dict[str, Path | str] = {}  # the figure's file, or why it could not be drawn
    for name, draw in jobs.items():
        try:
            drawn[name] = draw(folder / f"{name}.png")
        except Exception as exc:  # one bad figure must not cost the reader the rest of the report
            drawn[name] = f"could not be drawn: {type(exc).__name__}: {exc}"
    return drawn


def interactive_figures(a: Analysis) -> dict[str, dict[str, str]]:
    """task -> question -> the plotly <div> of its figure (a figure that fails is left out, with the reason)."""
    from harness.report.interactive import FIGURES

    colours = palette_for(a)
    plots: dict[str, dict[str, str]] = {}
    for task in sorted(a.tuned["task"].unique()):
        parts = tuned_parts(a, task)
        plots[task] = {}
        for question in QUESTIONS:
            source, draw = FIGURES[question]
            try:
                plots[task][question] = draw(parts[source], colours)
            except Exception as exc:  # as with the static figures: the report goes on
                plots[task][question] = f"<p>could not be drawn: {type(exc).__name__}</p>"
    return plots


def report_blocks(
    a: Analysis,
    paths: list[Path],
    properties: pd.DataFrame,
    drawn: dict[str, Path | str],
    plots: dict[str, dict[str, str]],
) -> list[Block]:
    runs = a.data.runs
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    intro = (
        f"{len(runs)} runs ({runs['task'].nunique()} task(s), {runs['act'].nunique()} activation(s), seeds "
        f"{', '.join(map(str, sorted(runs['seed'].unique())))}) from {', '.join(map(str, paths))}; made {when}. "
        f"Baseline: {a.baseline}. {HEADLINE}"
    )
    blocks: list[Block] = []
    for task in sorted(runs["task"].unique()):
        png = drawn.get(f"{slug(task)}_overview")
        blocks += first_screen(a, task, plots.get(task, {}), png if isinstance(png, Path) else None)
    blocks += [Heading("Summary"), Bullets(plain_summary(a)), Heading("The runs"), Text(intro)]
    if a.baseline_note:
        blocks.append(Text(a.baseline_note))
    blocks += results_blocks(a, drawn) + comparison_blocks(a) + rank_blocks(a, drawn)
    blocks += [Heading("Training"), *figure_blocks(drawn, ["learning_curves"])]
    for task in sorted(runs["task"].unique()):
        names = [
            f"{slug(task)}_{kind}" for kind in ["units", "activations", "gradients", "gradient_heatmap", "through_time"]
        ]
        if any(n in drawn for n in names):
            from harness.report.omitted import figure_notes  # what a panel leaves out, named in its caption

            notes = figure_notes(tuned_parts(a, task)["metrics"], slug(task))
            blocks += [Heading(f"Inside the network: {task}", 3), *figure_blocks(drawn, names, notes)]
    costs = cost.cost_table(a.data.costs, a.tuned, a.baseline)
    blocks += cost_text.blocks(costs, sorted(runs["task"].unique()), a.baseline)
    blocks += figure_blocks(drawn, ["cost", "accuracy_vs_cost"])
    if not drawn:
        blocks.append(Text("Figures were not drawn (figures=False)."))
    blocks += gallery_blocks(properties, drawn) + skipped_blocks(a, paths) + method_blocks(a) + columns_blocks()
    return blocks
