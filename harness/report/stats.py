"""Statistics across seeds: summaries with confidence intervals, paired tests against a baseline, ranks."""

from __future__ import annotations

import itertools
import math
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from harness.common import metrics

LEVEL = 0.95  # confidence level of every interval
ALPHA = 0.05  # significance threshold, after Holm's correction
FEW_SEEDS = 5  # fewer seeds than this: flagged as a small sample
MIN_TASKS_CD = 5  # fewer tasks than this: no critical-difference diagram (the Nemenyi test has no power)
EXACT_MAX_PAIRS = 16  # up to 2**16 sign vectors are enumerated; beyond, a fixed-seed Monte Carlo sample
MC_DRAWS = 100_000
KEYS = ["task", "act", "setting"]
# A seed collapsed to chance when its final validation accuracy is at most this times 1/classes. A network that
# predicts one class scores that class's share of the validation split, whose standard error over n samples of
# balanced classes is sqrt(p(1 - p)/n): 0.025 for digits' 144 (10 classes), so 1.5 x chance sits two standard
# errors above chance there, and further for larger splits or fewer classes (spirals: 240 samples, 3 classes).
CHANCE_MARGIN = 1.5
TIE_DECIMALS = 10  # mean validation accuracies equal to this many decimals tie (summation order moves the last bits)
FIRST = ["lr", "n_params", "width", "n_test", "init_used"]  # one value per row: the first run's


def mean_ci(values: npt.ArrayLike, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean, sample sd, CI low, CI high) by Student's t; NaNs are ignored, the CI needs two values."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = stats.t.ppf((1 + level) / 2, len(x) - 1) * sd / math.sqrt(len(x))
    return mean, sd, mean - half, mean + half


def diverged(runs: pd.DataFrame) -> pd.Series:
    """Runs whose status is 'diverged' (the trainer saw a NaN or Inf loss), or whose final train or test loss is
    recorded as infinite. A NaN loss is read as absent, not as divergence: summary.json stores a non-finite number
    as null and the loader reads a missing key as NaN, so NaN cannot tell the two apart (the status covers it)."""
    flags = (runs["status"] == "diverged") if "status" in runs else pd.Series(False, index=runs.index)
    for loss in ("train_loss", "test_loss"):
        if loss in runs:
            flags = flags | np.isinf(pd.to_numeric(runs[loss], errors="coerce").astype(float))
    return flags


def chance_accuracy(datasets: pd.Series) -> pd.Series:
    """1 / the number of classes of each run's dataset (harness.setup.data.DATASETS); NaN for one not registered."""
    from harness.setup.data import DATASETS  # it imports torch: loaded only when a chance level is asked for

    classes = datasets.map({name: spec.num_classes for name, spec in DATASETS.items()})
    return 1.0 / pd.to_numeric(classes, errors="coerce")


def collapsed(runs: pd.DataFrame) -> pd.Series:
    """Runs that did not diverge but ended at chance: final validation accuracy (`val_acc`) at most CHANCE_MARGIN
    times chance. Without `val_acc` or `dataset`, or for an unregistered dataset, a run is not judged collapsed."""
    if "val_acc" not in runs or "dataset" not in runs:
        return pd.Series(False, index=runs.index)
    final_val = pd.to_numeric(runs["val_acc"], errors="coerce")
    return (final_val <= CHANCE_MARGIN * chance_accuracy(runs["dataset"])) & ~diverged(runs)


def selection_counts(runs: pd.DataFrame, val: str = "best_val_acc") -> dict:
    """What choose_settings reads of one setting's seeds: how many, how many diverged, how many collapsed to
    chance, and the mean validation accuracy over those that did not diverge (a collapsed seed's counts: it is a
    real, bad result)."""
    bad = diverged(runs)
    kept = runs.loc[~bad, val] if val in runs else []
    counts = {"seeds": len(runs), "diverged": int(bad.sum()), "collapsed": int(collapsed(runs).sum())}
    return {**counts, "val_acc_mean": mean_ci(kept)[0]}


def summarise(runs: pd.DataFrame, keys: list[str] = KEYS) -> pd.DataFrame:
    """One row per task x activation x setting: seeds, divergence, mean/sd/CI of each metric over non-diverged runs."""
    rows = []
    for key, group in runs.groupby(keys, sort=True):
        ok = group[~diverged(group)]
        counts = selection_counts(group)  # what choose_settings reads: seeds, diverged, collapsed, val_acc_mean
        row = dict(zip(keys, key), seeds=counts["seeds"], diverged=counts["diverged"], collapsed=counts["collapsed"])
        row["divergence_rate"] = row["diverged"] / row["seeds"]
        for m in metrics.METRICS:  # the registry's metrics, each over the seeds that did not diverge
            values = ok[m.key] if m.key in ok else pd.Series(dtype=float)
            if m.geometric:
                row.update(zip([f"{m.short}_gmean", f"{m.short}_ci_low", f"{m.short}_ci_high"], geometric_ci(values)))
            else:
                names = [f"{m.short}_mean", f"{m.short}_sd", f"{m.short}_ci_low", f"{m.short}_ci_high"]
                row.update(zip(names, mean_ci(values)))
        row.update(worst_drawdown(ok))
        row.update({c: group[c].iloc[0] for c in FIRST if c in group})
        row["val_acc_mean"] = counts["val_acc_mean"]
        row["note"] = sample_note(row["seeds"], row["diverged"], row["collapsed"])
        rows.append(row)
    return pd.DataFrame(rows)


def geometric_ci(values: npt.ArrayLike) -> tuple[float, float, float]:
    """Geometric mean and the t-interval of the mean log, back on the ratio scale (ratios span decades)."""
    x = np.asarray(values, dtype=float)
    x = x[x > 0]
    mean, _, lo, hi = mean_ci(np.log(x))
    g_mean, g_lo, g_hi = (math.exp(v) if not math.isnan(v) else math.nan for v in (mean, lo, hi))
    return g_mean, g_lo, g_hi


def worst_drawdown(ok: pd.DataFrame) -> dict:
    """The largest drawdown among the seeds, and the seed that had it."""
    if "val_drawdown_max" not in ok or ok["val_drawdown_max"].isna().all():
        return {"drawdown_worst": math.nan, "drawdown_worst_seed": math.nan}
    worst = ok.loc[ok["val_drawdown_max"].idxmax()]
    return {"drawdown_worst": float(worst["val_drawdown_max"]), "drawdown_worst_seed": int(worst["seed"])}


def sample_note(n: int, n_diverged: int, n_collapsed: int = 0) -> str:
    """Flags a reader must see next to the numbers: few seeds, divergence, seeds that ended at chance."""
    notes = []
    if n_diverged:
        notes.append(f"{n_diverged}/{n} diverged (accuracy over the rest)")
    if n_collapsed:
        notes.append(f"{n_collapsed}/{n} ended at chance")
    if n - n_diverged < 2:
        notes.append("one usable seed: no interval")
    elif n < FEW_SEEDS:
        notes.append(f"few seeds ({n})")
    return "; ".join(notes)


def choose_settings(grid: pd.DataFrame, by: list[str], setting: str = "setting", lr: str = "lr") -> pd.DataFrame:
    """The one rule for choosing each `by` group's setting on validation (docs/reports.md, "Choosing a setting").

    grid: one row per group x setting with selection_counts' columns (seeds, diverged, collapsed, val_acc_mean).
    A setting where a seed diverged or collapsed to chance competes only if every setting of its group has such
    a seed, and then only those with the fewest; among the competitors the best mean validation accuracy wins,
    ties (to TIE_DECIMALS) going to the smaller learning rate, then to the first setting label in sorted order.
    Returns `by` + [setting], one row per group. The test split never enters: the grid holds no test number.
    """
    unstable = grid["diverged"] + (grid["collapsed"] if "collapsed" in grid else 0)
    ranked = grid.assign(_unstable=unstable, _val=grid["val_acc_mean"].astype(float).round(TIE_DECIMALS))
    competing = ranked[ranked["_unstable"] == ranked.groupby(by)["_unstable"].transform("min")]
    order = list(dict.fromkeys(["_val", *([lr] if lr in grid else []), setting]))  # lr may be the setting itself
    best = competing.sort_values(
        order, ascending=[False] + [True] * (len(order) - 1), na_position="last", kind="mergesort"
    ).drop_duplicates(by)
    return best[[*by, setting]].sort_values(by, kind="mergesort").reset_index(drop=True)


def validation_grid(runs: pd.DataFrame, keys: list[str], lr: str = "lr", val: str = "best_val_acc") -> pd.DataFrame:
    """selection_counts for each `keys` group of runs, with its lr (the first run's). A failed run is no seed: it
    crashed, which says nothing of the setting (the report sets failed runs aside before it gets here)."""
    status = runs["status"] if "status" in runs else pd.Series("ok", index=runs.index)
    rows = []
    for key, group in runs[status != "failed"].groupby(keys, sort=True):
        row = dict(zip(keys, key))
        if lr in group and lr not in row:
            row[lr] = group[lr].iloc[0]
        rows.append({**row, **selection_counts(group, val)})
    columns = list(dict.fromkeys([*keys, lr, "seeds", "diverged", "collapsed", "val_acc_mean"]))
    return pd.DataFrame(rows, columns=columns)


def tuned_setting(
    runs: pd.DataFrame, by: list[str], setting: str = "setting", lr: str = "lr", val: str = "best_val_acc"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """choose_settings on runs: (the choice, by + [setting]; the validation grid it was made from). The studies
    call this with their own column names (setting = lr = the learning rate's column)."""
    grid = validation_grid(runs, [*by, setting], lr, val)
    return choose_settings(grid, by, setting, lr), grid


def best_setting(summary: pd.DataFrame) -> pd.DataFrame:
    """Each task x activation's setting (lr, init, ...) chosen by choose_settings from summarise's counts."""
    return choose_settings(summary, ["task", "act"])


def at_best_setting(runs: pd.DataFrame, choice: pd.DataFrame) -> pd.DataFrame:
    """The runs of each task x activation at its chosen setting."""
    return runs.merge(choice, on=["task", "act", "setting"], how="inner")


def sign_flip_test(diffs: npt.ArrayLike) -> float:
    """Two-sided p-value of the paired sign-flip permutation test on the mean difference.

    Exact (all 2**n sign vectors) up to EXACT_MAX_PAIRS pairs; its smallest attainable p is 2 / 2**n.
    """
    d = np.asarray(diffs, dtype=float)
    if len(d) == 0:
        return math.nan
    observed = abs(d.sum())
    if len(d) <= EXACT_MAX_PAIRS:
        signs = np.array(list(itertools.product([1.0, -1.0], repeat=len(d))))  # (2**n, n)
        return float(np.mean(np.abs(signs @ d) >= observed - 1e-12 * max(observed, 1.0)))
    rng = np.random.default_rng(0)
    signs = rng.choice([1.0, -1.0], size=(MC_DRAWS, len(d)))
    hits = np.sum(np.abs(signs @ d) >= observed - 1e-12 * max(observed, 1.0))
    return float((hits + 1) / (MC_DRAWS + 1))


def holm(pvalues: npt.ArrayLike) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaNs stay NaN and do not count)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[j]))
        out[j] = running
    return out


def paired(a: pd.Series, b: pd.Series, family: int = 1) -> dict:
    """Statistics of a - b over the shared index (seeds); the adjusted interval is Bonferroni's for `family` tests."""
    d = (a - b).dropna().to_numpy(dtype=float)
    mean, sd, lo, hi = mean_ci(d)
    adj_lo, adj_hi = mean_ci(d, 1 - (1 - LEVEL) / family)[2:]
    with np.errstate(all="ignore"):
        t_p = stats.ttest_1samp(d, 0.0).pvalue if len(d) >= 2 and sd > 0 else math.nan
    return {
        "pairs": len(d),
        "diff_mean": mean,
        "diff_ci_low": lo,
        "diff_ci_high": hi,
        "diff_adj_low": adj_lo,
        "diff_adj_high": adj_hi,
        "family": family,
        "p_t": float(t_p),
        "p_perm": sign_flip_test(d),
        "p_perm_min": 2.0 ** (1 - len(d)) if len(d) else math.nan,
        "effect_dz": mean / sd if sd and sd > 0 else math.nan,  # Cohen's d_z: mean difference over its sd
        "wins": int((d > 0).sum()),  # seeds on which a is the larger
    }


def compare(runs: pd.DataFrame, baseline: str, group: list[str], metric: str = "test_acc_at_best_val") -> pd.DataFrame:
    """Each activation against the baseline within each group, paired by seed; Holm across the activations."""
    frames = []
    for key, runs_g in runs.groupby(group, sort=True):
        ok = runs_g[~diverged(runs_g)]
        by_seed = ok.pivot_table(index="seed", columns="act", values=metric, aggfunc="first")
        if baseline not in by_seed:
            continue
        rows = []
        others = [act for act in sorted(set(runs_g["act"]) - {baseline}) if act in by_seed]  # not all diverged
        for act in others:
            row = dict(zip(group, key if isinstance(key, tuple) else (key,)), act=act, baseline=baseline)
            row.update(paired(by_seed[act], by_seed[baseline], family=len(others)))
            rows.append(row)
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame["p_t_holm"] = holm(frame["p_t"])
        frame["p_perm_holm"] = holm(frame["p_perm"])
        frame["significant"] = frame["p_t_holm"] < ALPHA
        frame["note"] = [comparison_note(r, len(frame)) for r in frame.itertuples()]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class ComparisonRow(Protocol):
    """What comparison_note reads of a row of compare's frame (DataFrame.itertuples())."""

    pairs: int
    p_perm_min: float
    significant: bool
    diff_adj_low: float
    diff_adj_high: float


def comparison_note(row: ComparisonRow, family: int) -> str:
    """Flag comparisons whose sample cannot support a conclusion."""
    if row.pairs < 2:
        return "fewer than 2 pairs: no test"
    notes = []
    if row.pairs < FEW_SEEDS:
        notes.append(f"few pairs ({row.pairs})")
    if row.p_perm_min * family >= ALPHA:
        notes.append(f"sign-flip test cannot reach p < {ALPHA}")
    if row.significant and row.diff_adj_low <= 0 <= row.diff_adj_high:
        # Holm rejects whatever Bonferroni rejects, and sometimes more: then the Bonferroni interval touches 0.
        notes.append("significant by Holm's step-down; the (more conservative) Bonferroni interval includes 0")
    return "; ".join(notes)


def task_means(summary: pd.DataFrame) -> pd.DataFrame:
    """task x activation table of mean accuracy, restricted to activations present in every task."""
    table = summary.pivot_table(index="task", columns="act", values="acc_mean", aggfunc="first")
    return table.dropna(axis=1)


def ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Average rank of each activation across tasks (1 = best; ties share the mean rank)."""
    ranked = table.rank(axis=1, ascending=False)
    out = pd.DataFrame(
        {
            "act": ranked.columns,
            "mean_rank": ranked.mean().to_numpy(),
            "tasks": len(table),
            "wins": (ranked == 1).sum().to_numpy(),
        }
    )
    return out.sort_values("mean_rank", kind="stable").reset_index(drop=True)


def friedman(table: pd.DataFrame) -> dict:
    """Friedman test across tasks and the Nemenyi critical difference of average ranks (Demšar, 2006)."""
    n, k = table.shape
    result = {"tasks": n, "activations": k, "statistic": math.nan, "p": math.nan, "cd": math.nan}
    if k < 3 or n < 2:
        result["note"] = "needs at least 3 activations present in every task and 2 tasks"
        return result
    result["statistic"], result["p"] = map(float, stats.friedmanchisquare(*table.to_numpy().T))
    q = stats.studentized_range.ppf(1 - ALPHA, k, np.inf) / math.sqrt(2)
    result["cd"] = float(q * math.sqrt(k * (k + 1) / (6 * n)))
    result["note"] = f"few tasks ({n}): weak test, no critical-difference diagram" if n < MIN_TASKS_CD else ""
    return result
