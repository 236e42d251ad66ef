"""Statistics across seeds: summaries with confidence intervals, paired tests against a baseline, ranks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95  # confidence level of every interval
ALPHA = 0.05  # significance threshold, after Holm's correction
FEW_SEEDS = 5  # fewer seeds than this: flagged as a small sample
MIN_TASKS_CD = 5  # fewer tasks than this: no critical-difference diagram (the Nemenyi test has no power)
EXACT_MAX_PAIRS = 16  # up to 2**16 sign vectors are enumerated; beyond, a fixed-seed Monte Carlo sample
MC_DRAWS = 100_000
KEYS = ["task", "act", "setting"]
METRICS = {  # run column -> table prefix
    "test_acc_at_best_val": "acc",
    "test_acc": "final_acc",
    "train_loss": "train_loss",
    "test_loss": "test_loss",
    "samples_per_s": "samples_per_s",
    "speed": "speed",
    "dead_fraction": "dead",
    "saturated_fraction": "saturated",
    "dead_init_fraction": "dead_init",
    "lost_fraction": "lost",
    "val_drawdown_max": "drawdown",
}
RATIOS = {"grad_flow_ratio_init": "ratio_init", "grad_flow_ratio": "ratio_train"}  # averaged on the log scale
FIRST = ["lr", "n_params", "width", "n_test", "init_used"]  # one value per row: the first run's


def mean_ci(values, level: float = LEVEL) -> tuple[float, float, float, float]:
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
    return runs["status"] == "diverged"


def summarise(runs: pd.DataFrame, keys: list[str] = KEYS) -> pd.DataFrame:
    """One row per task x activation x setting: seeds, divergence, mean/sd/CI of each metric over non-diverged runs."""
    if "setting" in keys and "setting" not in runs:  # a frame from before settings: the lr is the setting
        runs = runs.assign(setting=runs["lr"].map(lambda v: f"lr={v:g}"))
    rows = []
    for key, group in runs.groupby(keys, sort=True):
        ok = group[~diverged(group)]
        row = dict(zip(keys, key), seeds=len(group), diverged=int(diverged(group).sum()))
        row["divergence_rate"] = row["diverged"] / row["seeds"]
        for column, prefix in METRICS.items():
            values = ok[column] if column in ok else []
            row.update(
                zip([f"{prefix}_mean", f"{prefix}_sd", f"{prefix}_ci_low", f"{prefix}_ci_high"], mean_ci(values))
            )
        for column, prefix in RATIOS.items():
            values = ok[column] if column in ok else pd.Series(dtype=float)
            row.update(zip([f"{prefix}_gmean", f"{prefix}_ci_low", f"{prefix}_ci_high"], geometric_ci(values)))
        row.update(worst_drawdown(ok))
        row.update({c: group[c].iloc[0] for c in FIRST if c in group})
        row["val_acc_mean"] = mean_ci(ok["best_val_acc"])[0] if "best_val_acc" in ok else math.nan
        row["note"] = sample_note(row["seeds"], row["diverged"])
        rows.append(row)
    return pd.DataFrame(rows)


def geometric_ci(values) -> tuple[float, float, float]:
    """Geometric mean and the t-interval of the mean log, back on the ratio scale (ratios span decades)."""
    x = np.asarray(values, dtype=float)
    x = x[x > 0]
    mean, _, lo, hi = mean_ci(np.log(x))
    return tuple(math.exp(v) if not math.isnan(v) else math.nan for v in (mean, lo, hi))


def worst_drawdown(ok: pd.DataFrame) -> dict:
    """The largest drawdown among the seeds, and the seed that had it."""
    if "val_drawdown_max" not in ok or ok["val_drawdown_max"].isna().all():
        return {"drawdown_worst": math.nan, "drawdown_worst_seed": math.nan}
    worst = ok.loc[ok["val_drawdown_max"].idxmax()]
    return {"drawdown_worst": float(worst["val_drawdown_max"]), "drawdown_worst_seed": int(worst["seed"])}


def sample_note(n: int, n_diverged: int) -> str:
    """Flags a reader must see next to the numbers: few seeds, divergence."""
    notes = []
    if n_diverged:
        notes.append(f"{n_diverged}/{n} diverged (accuracy over the rest)")
    if n - n_diverged < 2:
        notes.append("one usable seed: no interval")
    elif n < FEW_SEEDS:
        notes.append(f"few seeds ({n})")
    return "; ".join(notes)


def best_setting(summary: pd.DataFrame) -> pd.DataFrame:
    """Each task x activation's setting (lr, init, ...) with the best mean validation accuracy.

    Only settings at which no seed diverged compete, unless every one diverged somewhere; ties go to the smaller
    learning rate. Model selection looks at validation accuracy, never at the test split.
    """
    rows = []
    for (task, act), group in summary.groupby(["task", "act"], sort=True):
        stable = group[group["diverged"] == 0]
        candidates = stable if len(stable) else group
        best = candidates.sort_values(
            ["val_acc_mean", "lr", "setting"], ascending=[False, True, True], na_position="last"
        ).iloc[0]
        rows.append({"task": task, "act": act, "setting": best["setting"]})
    return pd.DataFrame(rows, columns=["task", "act", "setting"])


def at_best_setting(runs: pd.DataFrame, choice: pd.DataFrame) -> pd.DataFrame:
    """The runs of each task x activation at its chosen setting."""
    return runs.merge(choice, on=["task", "act", "setting"], how="inner")


def best_lr(summary: pd.DataFrame) -> pd.DataFrame:
    """The old name: best_setting with each choice's lr beside it (task, act, lr, setting)."""
    choice = best_setting(summary)
    return choice.merge(summary[["task", "act", "setting", "lr"]], on=["task", "act", "setting"])[
        ["task", "act", "lr", "setting"]
    ]


def at_best_lr(runs: pd.DataFrame, choice: pd.DataFrame) -> pd.DataFrame:
    """The old name of at_best_setting (a choice without `setting` is matched on lr)."""
    keys = ["task", "act", "setting"] if "setting" in choice and "setting" in runs else ["task", "act", "lr"]
    return runs.merge(choice[keys], on=keys, how="inner")


def sign_flip_test(diffs) -> float:
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


def holm(pvalues) -> np.ndarray:
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


def comparison_note(row, family: int) -> str:
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
