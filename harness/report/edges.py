"""Tuned, and honestly so: a learning rate chosen on validation at the edge of the grid it was chosen from says
that the best rate may lie beyond the grid, and which rates to try next. The report and the sweeper's end-of-sweep
table both read this module, so both judge the same runs by the same rule (stats.choose_settings)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.report import stats

BEYOND = 2  # how many rates past the edge are suggested
REL = 1e-6  # two ratios (or a ratio and a power of ten) this close are the same


@dataclass(frozen=True)
class Edge:
    """A task x activation whose rate chosen on validation is the smallest or largest of its grid."""

    task: str
    act: str
    others: str  # the chosen setting's other keys ("init=kaiming"), "" when the rate is the only one swept
    rates: tuple[float, ...]  # the rates tried with those other keys, ascending
    chosen: float
    side: str  # "largest" or "smallest"
    next_rates: tuple[float, ...]  # the rates to try beyond that edge, nearest first


def tidy(rate: float) -> float:
    """A rate to 12 significant digits: 3 x 10**-4 is 0.0003, not 0.00030000000000000003."""
    return float(f"{rate:.12g}")


def geometric(rates: Sequence[float]) -> bool:
    """Every step of the ascending grid the same ratio (a grid of two rates is geometric)."""
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    return all(math.isclose(r, ratios[0], rel_tol=REL) for r in ratios)


def by_decades(rates: Sequence[float]) -> bool:
    """Two rates of the grid a whole number of decades apart: the grid repeats by decades (1-3, 1-2-5 grids)."""
    for i, a in enumerate(rates):
        for b in rates[i + 1 :]:
            decades = math.log10(b / a)
            if round(decades) >= 1 and abs(decades - round(decades)) < REL:
                return True
    return False


def decade(rate: float) -> int:
    return math.floor(math.log10(rate) + REL)


def next_rates(rates: Sequence[float], side: str, count: int = BEYOND) -> tuple[float, ...]:
    """The `count` rates to try beyond the `side` ("largest" or "smallest") edge of a grid of at least 2 positive
    rates, nearest first, continuing the grid's own spacing:

    - a geometric grid (every step the same ratio; any grid of two rates) continues that ratio: beyond
      {1e-3, 1e-2} come 1e-1 and 1 above, 1e-4 and 1e-5 below; beyond {1e-3, 2e-3, 4e-3}, 8e-3 and 1.6e-2 above;
    - otherwise, a grid holding two rates a whole number of decades apart repeats by decades: its rates' leading
      digits continue into the next decades. Beyond {1e-3, 3e-3, 1e-2, 3e-2} come 1e-1 and 3e-1 above, 3e-4 and
      1e-4 below; beyond {1e-3, 2e-3, 5e-3, 1e-2}, 2e-2 and 5e-2 above;
    - any other grid continues the ratio of its two rates at that edge.

    A grid of two rates typed with one significant digit each gets its next rates to one significant digit too:
    beyond {3e-3, 1e-2} come 3e-2 and 1e-1 above (the ratio 3.33 kept to that precision), 9e-4 and 3e-4 below.
    """
    rates = sorted(rates)
    up = side == "largest"
    edge = rates[-1] if up else rates[0]
    if not geometric(rates) and by_decades(rates):
        digits = sorted({round(r / 10.0 ** decade(r), 6) for r in rates})
        start = decade(edge)
        found: list[float] = []
        for k in range(start, start + count + 2) if up else range(start, start - count - 2, -1):
            for d in digits if up else reversed(digits):
                rate = tidy(float(f"{d}e{k}"))
                if (rate > edge * (1 + REL)) if up else (rate < edge * (1 - REL)):
                    found.append(rate)
        return tuple(found[:count])
    ratio = rates[-1] / rates[-2] if up else rates[1] / rates[0]
    step = ratio if up else 1 / ratio
    found = [tidy(edge * step**i) for i in range(1, count + 1)]
    if len(rates) == 2 and all(one_digit(r) for r in rates):  # {3e-3, 1e-2}: 3e-2 and 1e-1, not 3.33e-2, 1.11e-1
        found = [float(f"{r:.0e}") for r in found]
    return tuple(found)


def one_digit(rate: float) -> bool:
    """A rate written with one significant digit (3e-3, 0.01), as a grid typed by hand is."""
    return math.isclose(rate, float(f"{rate:.0e}"), rel_tol=REL)


def others(setting: str, lr: float) -> str:
    """The setting's keys other than the learning rate: harness.report.load.label ends every setting with
    'lr={lr:g}', after the other swept keys ('init=kaiming, lr=0.01' -> 'init=kaiming')."""
    return setting.removesuffix(f"lr={lr:g}").removesuffix(", ")


def find_edges(summary: pd.DataFrame) -> list[Edge]:
    """Edges among rows of task, act, setting, lr and `chosen` (each task x activation's setting chosen by
    stats.choose_settings): the chosen rate against the rates tried with the chosen setting's other keys held
    equal. A grid of one rate was not tuned, and says nothing here."""
    if summary.empty:
        return []
    rows = summary.assign(_others=[others(s, lr) for s, lr in zip(summary["setting"], summary["lr"])])
    edges = []
    for (task, act), group in rows.groupby(["task", "act"], sort=True):
        pick = group[group["chosen"].astype(bool)]
        if pick.empty or pd.isna(pick["lr"].iloc[0]):
            continue
        chosen, kept = float(pick["lr"].iloc[0]), pick["_others"].iloc[0]
        rates = tuple(sorted({float(r) for r in group.loc[group["_others"] == kept, "lr"].dropna()}))
        if len(rates) < 2 or rates[0] < chosen < rates[-1]:
            continue
        side = "largest" if chosen == rates[-1] else "smallest"
        edges.append(Edge(str(task), str(act), kept, rates, chosen, side, next_rates(rates, side)))
    return edges


def choose(runs: pd.DataFrame) -> pd.DataFrame:
    """Each task x activation x setting's validation counts and lr, with `chosen` by stats.choose_settings: the
    rule the report applies to its summary, applied to labelled runs (harness.report.load.label)."""
    grid = stats.validation_grid(runs, stats.KEYS)
    choice = stats.choose_settings(grid, ["task", "act"]).assign(chosen=True)
    grid = grid.merge(choice, on=stats.KEYS, how="left")
    return grid.assign(chosen=grid["chosen"].fillna(False).astype(bool))


def rate_list(rates: Sequence[float]) -> str:
    return ", ".join(f"{r:g}" for r in rates)


def where(edge: Edge, with_task: bool = True) -> str:
    """'relu on digits / mlp' (with ', init=kaiming' when other keys were swept)."""
    return edge.act + (f" on {edge.task}" if with_task else "") + (f", {edge.others}" if edge.others else "")


def sentence(edge: Edge, with_task: bool = True) -> str:
    """The report's words for an edge."""
    beyond = "above" if edge.side == "largest" else "below"
    return (
        f"{where(edge, with_task)}: the chosen lr={edge.chosen:g} is the {edge.side} of the {len(edge.rates)} "
        f"rates tried ({rate_list(edge.rates)}), so the best rate may lie {beyond} them; try "
        f"{rate_list(edge.next_rates)} next"
    )


def sweep_line(edge: Edge) -> str:
    """The sweeper's line for an edge, with the override that tries the next rates."""
    return (
        f"warning: {where(edge)}: the chosen lr={edge.chosen:g} is the {edge.side} of the rates tried "
        f"({rate_list(edge.rates)}); try trainer.lr={','.join(f'{r:g}' for r in edge.next_rates)} next"
    )


def sweep_lines(run_dirs: Sequence[Path]) -> list[str]:
    """One line per edge among the finished runs in run_dirs, judged as the report judges them: the same loader,
    the same runs set aside, the same labels and the same rule."""
    from harness.records.results import load_runs
    from harness.report import load

    runs, _, _ = load_runs(*run_dirs, with_metrics=False)
    if runs.empty:
        return []
    runs, _ = load.set_aside_unusable(runs)
    if runs.empty:
        return []
    return [sweep_line(edge) for edge in find_edges(choose(load.label(runs)))]


def chosen_marks(summary: pd.DataFrame) -> list[str]:
    """The settings table's `chosen` cells: 'yes', or 'yes: the largest lr tried (try 0.1, 0.3 next)'."""
    at_edge = {(e.task, e.act): e for e in find_edges(summary)}
    marks = []
    for task, act, chosen in zip(summary["task"], summary["act"], summary["chosen"]):
        edge = at_edge.get((task, act)) if chosen else None
        mark = f"yes: the {edge.side} lr tried (try {rate_list(edge.next_rates)} next)" if edge else "yes"
        marks.append(mark if chosen else "")
    return marks
