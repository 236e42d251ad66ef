"""The report's cost answer, from the cost probe's records only (harness.records.cost): time per training step and
per forward pass, and memory per step, of each activation relative to the baseline on the same task and machine.

A run's own timing (samples/s) is never shown: runs that shared a machine, a group or a busy CPU time each other's
load, not the activation. The probe measured each cost setting alone, in rounds; two settings of one probe ran
round r in the same pass, so their ratio is taken round by round (paired) and its interval is the t-interval of the
per-round log ratios, back on the ratio scale. Settings of different probes are not paired, and no ratio is given.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

from harness.common.text import NAME_LIMIT, clean
from harness.records.cost import COST_FILE, find_cost_files, read_cost_file
from harness.records.results import flatten
from harness.report.load import Runs, skipped_frame
from harness.report.stats import LEVEL, geometric_ci

COLUMNS = (
    "task machine act probe rounds step_s step_low step_high forward_s forward_low forward_high memory_bytes "
    "memory_kind saved_bytes rss_bytes step_ratio step_ratio_low step_ratio_high forward_ratio forward_ratio_low "
    "forward_ratio_high memory_ratio note"
).split()


# ---- loading


def attach(data: Runs, paths: list[Path]) -> Runs:
    """The runs with the cost settings of every cost.json under the paths (labelled as the runs are); an unreadable
    cost.json is listed once among the skipped items and left out."""
    rows, bad = [], []
    for path in sorted({f.resolve() for p in paths for f in find_cost_files(Path(p))}):
        try:
            settings = read_cost_file(path)
        except (ValueError, OSError) as exc:  # harness.records.schema.Unreadable is a ValueError
            bad.append((str(path), f"unreadable {COST_FILE} (cost probe record): {exc}"))
            continue
        rows += [setting_row(path, s) for s in settings]
    costs = label(pd.DataFrame(rows), data.runs) if rows else pd.DataFrame()
    skipped = pd.concat([data.skipped, skipped_frame(bad)], ignore_index=True) if bad else data.skipped
    return replace(data, costs=costs, skipped=skipped)


def setting_row(path: Path, s: dict) -> dict:
    """One cost setting as a row: its configuration as config.* columns, the probe's numbers, and its memory."""
    row: dict[str, object] = {}
    flatten("config", s["config"], row)
    memory = s["memory"]
    # CUDA's allocator peak where there is one; else the count, exact where a process's resident memory is not
    # (a small model's step fits in what torch's import already took: the fresh process's peak is shown beside it)
    peak = memory.get("peak_alloc_bytes")
    kind, value = ("peak allocated", peak) if peak is not None else ("counted", counted(memory))
    row.update(
        source=str(path),
        cost_id=s["cost_id"],
        probe=s["probe"],
        machine=machine(s),
        step_rounds=list(s["step_s"]),
        forward_rounds=list(s["forward_s"]),
        memory_bytes=float(value),
        memory_kind=kind,
        saved_bytes=float(memory["saved_bytes"]),
        rss_bytes=math.nan if memory.get("peak_rss_bytes") is None else float(memory["peak_rss_bytes"]),
    )
    return row


def counted(memory: dict) -> float:
    """What a step holds by count: saved-for-backward bytes, parameters, their gradients, the optimizer's state."""
    return float(sum(memory[k] for k in ("saved_bytes", "param_bytes", "grad_bytes", "optimizer_bytes")))


def machine(s: dict) -> str:
    """'NVIDIA H200 (cuda)', 'AMD EPYC 7B13 (cpu, 1 thread)': one line or row of the answer per machine."""
    threads = f", {s['threads']} thread{'s' if s['threads'] != 1 else ''}" if s["device"] == "cpu" else ""
    return clean(f"{s['device_name']} ({s['device']}{threads})", NAME_LIMIT)  # the name is the file's, not ours


def activation_key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """dataset, model and every activation parameter as one string: a cost setting takes the task and activation
    labels (harness.report.load.label) of the runs with the same key."""
    present = frame.reindex(columns=columns)
    return present.map(str).agg("|".join, axis=1)  # map, not astype(str): that keeps NaN as missing in pandas 3


def label(costs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The cost settings with the task and act of the runs they measured; settings of an activation or task that no
    run of the report has are left out."""
    act_columns = sorted({c for c in [*runs.columns, *costs.columns] if c.startswith("config.activation.")})
    columns = ["config.dataset.name", "config.model.name", *act_columns]
    keys = activation_key(runs, columns)
    labels = runs.assign(key=keys).drop_duplicates("key").set_index("key")[["task", "act"]]
    costs = costs.assign(key=activation_key(costs, columns))
    costs = costs[costs["key"].isin(labels.index)]
    return costs.join(labels, on="key").drop(columns="key").reset_index(drop=True)


# ---- numbers


def median_ci(values: npt.ArrayLike, level: float = LEVEL) -> tuple[float, float, float]:
    """The median and its distribution-free interval [x_(k), x_(n+1-k)] with the largest k whose binomial coverage
    1 - 2 P(Bin(n, 1/2) <= k - 1) is at least `level`; no interval below 6 values (5 values cover only 94%)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    ks = [k for k in range(1, (n + 1) // 2 + 1) if 1 - 2 * sps.binom.cdf(k - 1, n, 0.5) >= level]
    if not ks:
        return float(np.median(x)), math.nan, math.nan
    k = max(ks)
    return float(np.median(x)), float(x[k - 1]), float(x[n - k])


def paired_ratio(rounds: list[float], base: list[float]) -> tuple[float, float, float]:
    """Geometric mean of the per-round ratios of two settings of one probe and its t-interval (stats.geometric_ci);
    rounds pair by their index."""
    n = min(len(rounds), len(base))
    return geometric_ci(np.asarray(rounds[:n], dtype=float) / np.asarray(base[:n], dtype=float))


def pick(candidates: pd.DataFrame, tuned: pd.DataFrame) -> pd.Series:
    """Of one activation's cost settings on one machine, the one whose configuration agrees with the runs at its
    chosen setting on the most keys (a task that sweeps the width has one cost setting per width)."""
    if len(candidates) == 1 or tuned.empty:
        return candidates.iloc[0]
    run = tuned.iloc[0]
    keys = [c for c in candidates.columns if c.startswith("config.") and c in run.index]
    agree = [sum(str(row[c]) == str(run[c]) for c in keys) for _, row in candidates.iterrows()]
    return candidates.iloc[int(np.argmax(agree))]


def cost_table(costs: pd.DataFrame | None, tuned: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per task x machine x activation: medians with intervals, and ratios to the baseline."""
    if costs is None or costs.empty:
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    for (task, where), group in costs.groupby(["task", "machine"], sort=True):
        picked = {
            act: pick(g, tuned[(tuned["task"] == task) & (tuned["act"] == act)]) for act, g in group.groupby("act")
        }
        base = picked.get(baseline)
        for act in sorted(picked, key=lambda a: (a != baseline, a)):
            rows.append(table_row(task, str(where), act, picked[act], base, baseline))
    return pd.DataFrame(rows, columns=COLUMNS)


def table_row(task: str, where: str, act: str, s: pd.Series, base: pd.Series | None, baseline: str) -> dict:
    step, forward = median_ci(s["step_rounds"]), median_ci(s["forward_rounds"])
    row = {
        "task": task,
        "machine": where,
        "act": act,
        "probe": s["probe"],
        "rounds": len(s["step_rounds"]),
        **dict(zip(["step_s", "step_low", "step_high"], step)),
        **dict(zip(["forward_s", "forward_low", "forward_high"], forward)),
        "memory_bytes": s["memory_bytes"],
        "memory_kind": s["memory_kind"],
        "saved_bytes": s["saved_bytes"],
        "rss_bytes": s["rss_bytes"],
        "note": "",
    }
    ratios = ["step_ratio", "step_ratio_low", "step_ratio_high", "forward_ratio", "forward_ratio_low"]
    row.update(dict.fromkeys([*ratios, "forward_ratio_high", "memory_ratio"], math.nan))
    if base is None:
        row["note"] = f"no {baseline} cost record on this machine"
    elif act != baseline and base["probe"] != s["probe"]:
        row["note"] = f"measured by another probe than {baseline}: rounds not paired, no ratio"
    elif act != baseline:
        row.update(zip(ratios[:3], paired_ratio(s["step_rounds"], base["step_rounds"])))
        row.update(zip(ratios[3:] + ["forward_ratio_high"], paired_ratio(s["forward_rounds"], base["forward_rounds"])))
        if s["memory_kind"] == base["memory_kind"]:
            row["memory_ratio"] = s["memory_bytes"] / base["memory_bytes"]
    return row


# ---- accuracy against cost, the sweep's compute, the section


def accuracy_points(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Per task x machine x activation: time per step (probe) and test accuracy at best validation (mean over seeds
    at the chosen setting, with its interval), and whether it is on the Pareto front of its task and machine."""
    chosen = summary.loc[summary["chosen"], ["task", "act", "acc_mean", "acc_ci_low", "acc_ci_high"]]
    points = table[["task", "machine", "act", "step_s", "step_low", "step_high"]].merge(chosen, on=["task", "act"])
    front = pd.Series(False, index=points.index)
    for _, g in points.groupby(["task", "machine"]):
        front[g.index] = g["act"].isin(pareto(g))
    return points.assign(pareto=front.astype(bool))


def pareto(points: pd.DataFrame, x: str = "step_s", y: str = "acc_mean") -> set[str]:
    """The activations that no other beats on both: none is at least as fast and as accurate, and better in one."""
    ok = points.dropna(subset=[x, y])
    front = set()
    for _, p in ok.iterrows():
        dominated = (ok[x] <= p[x]) & (ok[y] >= p[y]) & ((ok[x] < p[x]) | (ok[y] > p[y]))
        if not dominated.any():
            front.add(str(p["act"]))
    return front


def compute_line(runs: pd.DataFrame) -> str:
    """The sweep's cost: the wall time of every training loop, each group of runs trained together counted once (a
    group's members each record the whole group's wall time, which is no member's own speed)."""
    wall = pd.Series(math.nan, index=runs.index)
    for column in ("train_time_s", "loop_time_s"):  # the whole loop where it is recorded
        if column in runs:
            wall = pd.to_numeric(runs[column], errors="coerce").combine_first(wall)
    group = runs["group.id"] if "group.id" in runs else pd.Series(None, index=runs.index, dtype=object)
    grouped = group.notna()
    per_group = wall[grouped].groupby(group[grouped]).max()
    total = float(per_group.sum() + wall[~grouped].sum())
    several = int((runs.loc[grouped, "group.id"].value_counts() > 1).sum()) if grouped.any() else 0
    return (
        f"Compute: the {len(runs)} runs' training loops took {total / 3600:.3g} h of wall time in all "
        f"({total:,.0f} s), {per_group.size + int((~grouped).sum())} loop(s), of which {several} trained several runs "
        "together as one group and are counted once. A group's wall time is the sweep's cost, never a member's "
        "speed: the cost answer's figures come from the cost probe alone."
    )
