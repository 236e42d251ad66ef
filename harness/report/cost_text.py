"""The report's cost answer and section in words and tables: what harness.report.cost computed from the probe's
records, as the first screen's sentence per machine and the cost section's table."""

from __future__ import annotations

import math

import pandas as pd

from harness.report.render import Block, Heading, Table, Text

NO_RECORDS = (
    "no cost probe records: no speed or memory figure is shown for this task, because a run's own timing measures "
    "what else ran beside it as much as the activation. A sweep's cost probe writes them to <sweep>/.cost/cost.json "
    "before its jobs run (unless hydra.sweeper.cost_probe=false); for an older sweep, run its command again: it "
    "resumes, measures the missing settings and retrains nothing finished (docs/cost.md)."
)


def duration(seconds: float) -> str:
    """3 significant figures in µs, ms or s."""
    if math.isnan(seconds):
        return "n/a"
    for unit, scale in [("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)]:
        if seconds >= scale or unit == "µs":
            return f"{seconds / scale:.3g} {unit}"
    raise AssertionError("unreachable")


def size(n: float) -> str:
    """Bytes in KiB, MiB or GiB, 3 significant figures."""
    if math.isnan(n):
        return "n/a"
    for unit, scale in [("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)]:
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def times(value: float, lo: float, hi: float) -> str:
    """'1.14× [1.12, 1.16]'."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}×" + ("" if math.isnan(lo) else f" [{lo:.3g}, {hi:.3g}]")


def timed(value: float, lo: float, hi: float) -> str:
    return duration(value) + ("" if math.isnan(lo) else f" [{duration(lo)}, {duration(hi)}]")


def versus(r: pd.Series, what: str, baseline: str) -> str:
    """' (1.14× [1.12, 1.16] relu)', or the row's note where it has no ratio."""
    if r["act"] == baseline:
        return ""
    if r["note"]:
        return f" ({r['note']})"
    return f" ({times(r[f'{what}_ratio'], r[f'{what}_ratio_low'], r[f'{what}_ratio_high'])} {baseline})"


def answer(table: pd.DataFrame, task: str, baseline: str) -> str:
    """The first screen's cost answer for one task: one sentence per machine."""
    rows = table[table["task"] == task]
    if rows.empty:
        return NO_RECORDS[:1].upper() + NO_RECORDS[1:]
    sentences = []
    for where, g in rows.groupby("machine", sort=True):
        step = "; ".join(
            f"{r.act} {timed(r.step_s, r.step_low, r.step_high)}{versus(r, 'step', baseline)}" for _, r in g.iterrows()
        )
        forward = "; ".join(
            f"{r.act} {timed(r.forward_s, r.forward_low, r.forward_high)}{versus(r, 'forward', baseline)}"
            for _, r in g.iterrows()
        )
        memory = "; ".join(
            f"{r.act} {size(r.memory_bytes)} ({r.memory_kind})"
            + (f", {r.memory_ratio:.3g}× {baseline}" if not math.isnan(r.memory_ratio) else "")
            for _, r in g.iterrows()
        )
        sentences.append(
            f"On {where}, measured alone by the cost probe, median [95% CI] over {rounds(g)} rounds, and the paired "
            f"ratio to {baseline} [95% CI]: per training step {step}. Per forward pass {forward}. Memory per step "
            f"{memory}."
        )
    return " ".join(sentences)


def rounds(g: pd.DataFrame) -> str:
    n = sorted(set(g["rounds"]))
    return str(n[0]) if len(n) == 1 else f"{n[0]} to {n[-1]}"


def display(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The cost table as the report shows it."""
    return pd.DataFrame(
        {
            "task": table["task"],
            "machine": table["machine"],
            "activation": table["act"],
            "time per step [95% CI]": [timed(*v) for v in table[["step_s", "step_low", "step_high"]].to_numpy()],
            f"step vs {baseline} [95% CI]": ratio_cells(table, "step"),
            "time per forward [95% CI]": [
                timed(*v) for v in table[["forward_s", "forward_low", "forward_high"]].to_numpy()
            ],
            f"forward vs {baseline} [95% CI]": ratio_cells(table, "forward"),
            "memory per step": [f"{size(m)} ({k})" for m, k in zip(table["memory_bytes"], table["memory_kind"])],
            f"memory vs {baseline}": table["memory_ratio"].map(lambda v: "–" if math.isnan(v) else f"{v:.3g}×"),
            "saved for backward": table["saved_bytes"].map(size),
            "peak RSS, fresh process": table["rss_bytes"].map(lambda v: "–" if math.isnan(v) else size(v)),
            "rounds": table["rounds"],
            "probe": table["probe"],
            "note": table["note"],
        }
    ).reset_index(drop=True)


def ratio_cells(table: pd.DataFrame, what: str) -> list[str]:
    return [
        "–" if math.isnan(v) else times(v, lo, hi)
        for v, lo, hi in table[[f"{what}_ratio", f"{what}_ratio_low", f"{what}_ratio_high"]].to_numpy()
    ]


def blocks(table: pd.DataFrame, tasks: list[str], baseline: str) -> list[Block]:
    """The cost section's text and table (its figures follow it)."""
    missing = sorted(set(tasks) - set(table["task"]))
    out: list[Block] = [Heading("Cost")]
    if missing:
        out.append(Text(f"{', '.join(missing)}: {NO_RECORDS}"))
    if table.empty:
        return out
    out.append(
        Table(
            display(table, baseline),
            "Each activation at its chosen setting, measured alone by the cost probe (never the runs' own timing): "
            "median over the probe's rounds with its distribution-free 95% interval; the ratio to "
            f"{baseline} on the same machine is the geometric mean of the per-round ratios (rounds of one probe "
            "ran side by side) with the t-interval of their logs. Memory per step: the allocator's peak during a "
            "step on CUDA; elsewhere counted (saved for backward, parameters, gradients, optimizer state). On the "
            "CPU, the peak resident memory of a fresh process that took a few steps, imports included.",
        )
    )
    return out
