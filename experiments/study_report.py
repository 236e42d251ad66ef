"""Write a study's committed report (report.md, summary.csv, figures/) from its sweep folders.

    python experiments/study_report.py NAME SWEEP_DIR [SWEEP_DIR ...] [--out results/NAME]

NAME is one of the studies in conf/experiment/: dying_relu, mnist1d_baselines, vanishing_gradients, article_claims,
modern_activations, lr_fairness. The tables here are the evidence that experiments/NAME.md quotes.
"""
from __future__ import annotations

import argparse
import datetime
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.results import load_runs  # noqa: E402

DPI = 90
PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "mlp_residual": 0.68, "cnn": 0.94, "gru": 0.91}  # MNIST-1D README


# ---------------------------------------------------------------- helpers


def md_table(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    """A DataFrame as a GitHub Markdown table (index included when named)."""
    if df.index.name or any(df.index.names):
        df = df.reset_index()
    cells = [[floatfmt.format(v) if isinstance(v, (float, np.floating)) and not pd.isna(v) else
              ("" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)) for v in row]
             for row in df.itertuples(index=False)]
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in cells])


def mean_sd(values: pd.Series, scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± sd (n)' of a series, scaled (accuracies as percentages)."""
    v = values.dropna() * scale
    if len(v) == 0:
        return "n/a"
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f}"


def timing(runs: pd.DataFrame) -> str:
    """How long the runs took: wall span from first start to last finish, and the sum of job times."""
    start = pd.to_datetime(runs["started_at"], utc=True)
    end = pd.to_datetime(runs["finished_at"], utc=True)
    span = (end.max() - start.min()).total_seconds()
    total = (end - start).dt.total_seconds().sum()
    return (f"{len(runs)} runs; wall time {span / 60:.1f} min from first start to last finish; "
            f"sum of job times {total / 60:.1f} min")


def variant(runs: pd.DataFrame, group: str) -> pd.Series:
    """The `+experiment/GROUP=X` choice of each run, from its overrides."""
    def pick(overrides):
        for o in overrides if isinstance(overrides, list) else []:
            if o.lstrip("+").startswith(f"experiment/{group}="):
                return o.split("=", 1)[1]
        return None
    return runs["overrides"].map(pick)


def layer_index(layer: str) -> int:
    return int(layer.split(".")[1]) if layer.startswith("hidden.") else 10**6


def by_layer(runs: pd.DataFrame, key: str, keep: list[str]) -> pd.DataFrame:
    """Long table of a `KEY_by_layer` summary value: keep columns, layer, depth index, value."""
    cols = [c for c in runs.columns if c.startswith(f"{key}_by_layer.")]
    long = runs[keep + cols].melt(id_vars=keep, var_name="layer", value_name="value")
    long["layer"] = long["layer"].str.removeprefix(f"{key}_by_layer.")
    long["depth"] = long["layer"].map(layer_index)
    return long.dropna(subset=["value"])


def save(fig, out: Path, name: str) -> str:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    if not fig.legends:  # seaborn's figure-level plots already lay out room for their outside legend
        fig.tight_layout()
    fig.savefig(out / "figures" / name, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return f"![{name}](figures/{name})"


def paired(runs: pd.DataFrame, value: str, by: list[str], a: str, b: str, key: str = "activation") -> dict:
    """Paired comparison (by seed) of `value` between key=a and key=b: mean difference a-b, 95% CI, t-test p."""
    pa = runs[runs[key] == a].set_index(by + ["seed"])[value]
    pb = runs[runs[key] == b].set_index(by + ["seed"])[value]
    d = (pa - pb).dropna()
    if len(d) < 2:
        return {"n": len(d), "diff": d.mean() if len(d) else math.nan, "lo": math.nan, "hi": math.nan,
                "p": math.nan, "wins": int((d > 0).sum())}
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    p = stats.ttest_rel(pa.loc[d.index], pb.loc[d.index]).pvalue if d.std(ddof=1) > 0 else math.nan
    return {"n": len(d), "diff": d.mean(), "lo": d.mean() - half, "hi": d.mean() + half, "p": p,
            "wins": int((d > 0).sum())}


def header(name: str, paths: list[str], runs: pd.DataFrame, skipped: pd.DataFrame) -> list[str]:
    status = runs["status"].value_counts().to_dict() if len(runs) else {}
    lines = [f"# Study report: {name}", "",
             f"Generated {datetime.datetime.now().astimezone().isoformat(timespec='minutes')} by "
             f"`python experiments/study_report.py {name} {' '.join(paths)}`; the write-up is "
             f"`experiments/{name}.md`.", "",
             f"Runs: {timing(runs) if len(runs) else 'none'}. Status: {status}."
             + (f" Skipped folders: {len(skipped)}." if len(skipped) else ""), ""]
    if len(runs) and runs["git_sha"].notna().any():
        lines += [f"Code: git {', '.join(sorted(set(runs['git_sha'].dropna().str[:8])))}"
                  f"{' (dirty tree)' if runs['git_dirty'].any() else ''}; torch "
                  f"{', '.join(sorted(set(runs['torch_version'].dropna())))}; device "
                  f"{', '.join(sorted(set(runs['device'].dropna())))}.", ""]
    return lines


# ---------------------------------------------------------------- dying_relu


def dying_relu(runs, metrics, out: Path) -> list[str]:
    r = runs.rename(columns={"config.model.init": "init", "config.model.width": "width",
                             "config.model.depth": "depth"})
    cols = ["activation", "init", "width", "depth", "init_trials", "born_dead_fraction", "born_dead_se",
            "init_dead_fraction_mean"]
    table = r[cols].sort_values(cols[:4]).reset_index(drop=True)
    mc_path = out / "montecarlo.csv"
    mc = pd.read_csv(mc_path) if mc_path.exists() else None
    if mc is not None:
        table = table.merge(mc.rename(columns={"born_dead_fraction": "mc_fraction", "born_dead_se": "mc_se",
                                               "trials": "mc_trials"})
                            [["init", "width", "depth", "mc_fraction", "mc_se", "mc_trials",
                              "single_input_heuristic"]], on=["init", "width", "depth"], how="left")
    table.to_csv(out / "summary.csv", index=False)
    lines = ["## Born-dead fraction of ReLU MLPs (MNIST-1D probe inputs)", "",
             "Fraction of initialisations with some hidden layer dead for all 1,024 probe inputs "
             "(± binomial standard error). Rows: width; columns: depth.", ""]
    relu = table[table["activation"] == "relu"]
    for init, part in relu.groupby("init"):
        cell = part.assign(v=[f"{p:.2f} ± {s:.2f}" for p, s in zip(part.born_dead_fraction, part.born_dead_se)])
        lines += [f"### model.init={init} (harness, {int(part.init_trials.iloc[0])} initialisations per cell)", "",
                  md_table(cell.pivot(index="width", columns="depth", values="v")), ""]
        if mc is not None and part["mc_fraction"].notna().any():
            cell = part.assign(v=[f"{p:.2f}" for p in part.mc_fraction])
            lines += [f"Direct Monte Carlo (`experiments/dying_relu_montecarlo.py`, Gaussian inputs, "
                      f"{int(part.mc_trials.iloc[0])} networks per cell):", "",
                      md_table(cell.pivot(index="width", columns="depth", values="v")), ""]
    if mc is not None:
        cell = mc[mc["init"] == "kaiming"].assign(v=lambda d: d.single_input_heuristic.map("{:.2f}".format))
        lines += ["Single-input heuristic 1 - (1 - 2^-width)^depth (one input, zero biases: each unit off with "
                  "probability 1/2):", "", md_table(cell.pivot(index="width", columns="depth", values="v")), ""]
    first_cols = [c for c in r.columns if c.startswith("born_dead_first_layer.")]
    if first_cols:
        depth_of = {c: layer_index(c.removeprefix("born_dead_first_layer.")) + 1 for c in first_cols}
        counts = r[first_cols].fillna(0)
        weighted = sum(counts[c] * d for c, d in depth_of.items())
        r = r.assign(first_dead=(weighted / counts.sum(axis=1)).where(counts.sum(axis=1) > 0))
        deep = r[(r.activation == "relu") & (r.depth == r.depth.max())]
        lines += [f"Where the network dies: mean position (1 = first hidden layer) of the first all-dead layer among "
                  f"born-dead initialisations, depth {int(r.depth.max())}:", "",
                  md_table(deep.pivot_table(index="width", columns="init", values="first_dead"), "{:.1f}"), ""]
    leaky = table[table["activation"] == "leaky_relu"]
    if len(leaky):
        lines += [f"**Leaky ReLU control:** {len(leaky)} configurations, "
                  f"{int(leaky.init_trials.sum())} initialisations in all, largest born-dead fraction "
                  f"{leaky.born_dead_fraction.max():.3f}, largest mean dead-unit fraction "
                  f"{leaky.init_dead_fraction_mean.max():.3f}.", ""]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    palette = dict(zip(sorted(relu.width.unique()), sns.color_palette("viridis", relu.width.nunique())))
    for ax, (init, part) in zip(axes, relu.groupby("init")):
        for w, g in part.groupby("width"):
            ax.errorbar(g.depth, g.born_dead_fraction, yerr=g.born_dead_se, color=palette[w], marker="o",
                        label=f"width {w} (harness)")
            if mc is not None:
                ax.plot(g.depth, g.mc_fraction, color=palette[w], ls="--", alpha=0.7)
        if len(leaky):
            lk = leaky[leaky.init == init].groupby("depth").born_dead_fraction.max()
            ax.plot(lk.index, lk.values, color="red", marker="x", ls=":", label="leaky_relu (all widths)")
        ax.set(title=f"model.init={init}", xlabel="depth (hidden layers)", ylabel="P(born dead)")
    axes[0].legend(fontsize=7)
    lines += ["Solid: harness (MNIST-1D inputs); dashed: direct Monte Carlo (Gaussian inputs).", "",
              save(fig, out, "born_dead_vs_depth.png"), ""]
    return lines


# ---------------------------------------------------------------- mnist1d_baselines


def baseline_name(row) -> str:
    m = row["config.model.name"]
    if m == "mlp":
        return "logistic" if row["config.model.depth"] == 0 else "mlp_residual" if row["config.model.residual"] \
            else "mlp"
    return {"cnn": "cnn", "rnn": "gru"}[m]


def mnist1d_baselines(runs, metrics, out: Path) -> list[str]:
    r = runs.assign(baseline=runs.apply(baseline_name, axis=1),
                    train_n=lambda d: (4000 * (1 - d["config.dataset.val_fraction"])).round().astype(int))
    rows = []
    for (train_n, name), g in sorted(r.groupby(["train_n", "baseline"]),
                                     key=lambda kv: (-kv[0][0], list(PUBLISHED).index(kv[0][1]))):
        rows.append({"model": name, "train samples": train_n, "seeds": len(g), "steps": int(g.steps.max()),
                     "test acc % (final)": mean_sd(g.test_acc),
                     "test acc % (at best val)": mean_sd(g.test_acc_at_best_val),
                     "published %": f"{100 * PUBLISHED[name]:.0f}",
                     "gap (final - published)": f"{100 * (g.test_acc.mean() - PUBLISHED[name]):+.1f}",
                     "train time s": f"{g.train_time_s.mean():.1f}"})
    table = pd.DataFrame(rows)
    table.to_csv(out / "summary.csv", index=False)
    r[["baseline", "train_n", "seed", "status", "test_acc", "test_acc_at_best_val", "best_val_acc", "train_acc",
       "train_time_s"]].sort_values(["baseline", "train_n", "seed"]).to_csv(out / "runs.csv", index=False)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    order = [n for n in PUBLISHED if n in set(r.baseline)]
    sns.stripplot(data=r, x="baseline", y="test_acc", hue="train_n", order=order, ax=ax, size=5, dodge=True)
    ax.scatter(range(len(order)), [PUBLISHED[n] for n in order], marker="_", s=900, color="red",
               label="published (MNIST-1D README)")
    ax.set(ylabel="test accuracy", xlabel="")
    ax.legend(fontsize=8)
    return ["## Accuracy beside the published baselines", "",
            "Published: github.com/greydanus/mnist1d README (logistic 32%, MLP 68%, CNN 94%, GRU 91%). "
            "Ours: mean ± sd over seeds; `final` is the test accuracy after the last step, `at best val` the test "
            "accuracy at the evaluation with the best validation accuracy.", "", md_table(table), "",
            save(fig, out, "baselines.png"), ""]


# ---------------------------------------------------------------- vanishing_gradients


def vanishing_gradients(runs, metrics, out: Path) -> list[str]:
    r = runs.rename(columns={"config.model.init": "init"})
    r["part"] = r["config.model.name"].map({"mlp": "mlp10", "rnn": "elman"})
    r["lr"] = r["config.trainer.lr"]
    keep = ["run_dir", "part", "activation", "init"]
    lines = []
    acc = r.pivot_table(index=["part", "activation", "lr"], columns="init", values="test_acc", aggfunc="mean")
    main_lr = r["lr"].mode().iloc[0]  # the study's own rate; other rates only enter the accuracy table
    r = r[r["lr"] == main_lr]
    status = r[r.status != "ok"][["part", "activation", "init", "status", "diverged_at_step"]]
    gi = by_layer(r, "grad_norm_init", keep)
    gi = gi[gi.layer != "head"]
    ratio = gi.pivot_table(index=["run_dir"], columns="depth", values="value")
    mlp = r[r.part == "mlp10"].set_index("run_dir")
    rat = (ratio.loc[mlp.index, 0] / ratio.loc[mlp.index, ratio.columns.max()]).rename("ratio")
    mlp = mlp.join(rat)
    sat_end = mlp.pivot_table(index="activation", columns="init", values="saturated_fraction")
    dead_end = mlp.pivot_table(index="activation", columns="init", values="dead_fraction")
    lines += ["## Test accuracy (final)", "", md_table(acc), "",
              f"Every table and figure below is at the study's learning rate, {main_lr:g}.", ""]
    if len(status):
        lines += ["Runs that did not finish ok:", "", md_table(status), ""]
    lines += ["## 10-layer MLP: gradient norm of the first hidden layer / the last hidden layer, at initialisation",
              "", "Glorot and Bengio's picture: with sigmoid and default init the gradient shrinks (or the "
              "first layers learn slowly) toward the input; well-scaled inits keep the ratio near 1.", "",
              md_table(mlp.pivot_table(index="activation", columns="init", values="ratio"), "{:.3g}"), "",
              "## 10-layer MLP: saturated fraction of all hidden units at the end of training", "",
              md_table(sat_end), "", "## 10-layer MLP: dead fraction at the end of training", "",
              md_table(dead_end), ""]
    summary = r[keep[1:] + ["seed", "status", "test_acc", "best_val_acc", "dead_fraction", "saturated_fraction",
                            "grad_norm_global", "train_time_s"]].copy()
    summary = summary.merge(rat.rename("grad_ratio_first_last_init"), left_on=r.run_dir, right_index=True,
                            how="left").drop(columns="key_0", errors="ignore")
    summary.to_csv(out / "summary.csv", index=False)
    # figures: gradient norm per layer at init, and averaged over training
    for key, title in [("grad_norm_init", "at initialisation"), ("grad_norm", "mean over training")]:
        g = by_layer(r[r.part == "mlp10"], key, keep)
        g = g[g.layer != "head"]
        grid = sns.relplot(data=g, x="depth", y="value", hue="activation", col="init", kind="line", marker="o",
                           height=2.8, aspect=1.0, facet_kws={"sharey": True})
        grid.set(yscale="log", xlabel="hidden layer", ylabel="||dL/dW||")
        grid.figure.suptitle(f"10-layer MLP: weight-gradient norm per layer, {title}", y=1.03)
        lines += [save(grid.figure, out, f"mlp_{key}_by_layer.png"), ""]
    if len(metrics):
        m = metrics.merge(r[keep], on="run_dir")
        probe = m[(m.split == "probe") & (m.part == "mlp10")]
        for metric, label in [("act_std", "std of the activation output"),
                              ("saturated_fraction", "saturated fraction")]:
            sel = probe[probe.metric == metric].copy()
            sel["depth"] = sel.layer.map(layer_index)
            steps = sorted(sel.step.unique())
            sel = sel[sel.step.isin([steps[0], steps[-1]])]
            sel["when"] = np.where(sel.step == steps[0], "init", f"step {steps[-1]}")
            grid = sns.relplot(data=sel, x="depth", y="value", hue="activation", style="when", col="init",
                               kind="line", height=2.8, aspect=1.0)
            grid.set(xlabel="hidden layer", ylabel=label, yscale="log" if metric == "act_std" else "linear")
            lines += [save(grid.figure, out, f"mlp_{metric}_by_layer.png"), ""]
        ht = m[(m.metric == "grad_norm_h") & (m.part == "elman")]
        if len(ht):
            steps = sorted(ht.step.unique())
            ht = ht[ht.step.isin([steps[0], steps[-1]]) & (ht.split == "probe")]
            ht["when"] = np.where(ht.step == steps[0], "init", f"end (step {steps[-1]})")
            grid = sns.relplot(data=ht, x="t", y="value", hue="activation", col="init", row="when", kind="line",
                               height=2.5, aspect=1.1)
            grid.set(yscale="log", xlabel="time step t", ylabel="||dL/dh_t||")
            lines += ["## Elman RNN: gradient through time", "",
                      "||dL/dh_t|| per time step (the loss reads every step through the head, so the norm at t "
                      "mixes the direct path and the path back through time).", "",
                      save(grid.figure, out, "elman_grad_through_time.png"), ""]
            first_last = ht[ht.step == steps[0]].pivot_table(index=["activation", "init"], columns="t",
                                                               values="value")
            tcols = first_last.columns
            lines += ["Elman at initialisation: ||dL/dh_0|| / ||dL/dh_T-1||:", "",
                      md_table((first_last[tcols.min()] / first_last[tcols.max()]).unstack("init"), "{:.3g}"), ""]
    return lines


# ---------------------------------------------------------------- article_claims


def early_loss(metrics: pd.DataFrame, runs: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """Train loss at the first logged step of each run (the first training window)."""
    tl = metrics[(metrics.split == "train") & (metrics.metric == "loss")]
    first = tl.loc[tl.groupby("run_dir").step.idxmin()][["run_dir", "step", "value"]]
    return first.merge(runs[keep], on="run_dir")


def article_claims(runs, metrics, out: Path) -> list[str]:
    r = runs.copy()
    r["model"] = variant(r, "article").fillna(r["model"])
    order = ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "rrelu", "relu6"]
    r["gap"] = r["train_acc"] - r["test_acc"]
    lines = ["## Test accuracy % (mean ± sd over seeds)", ""]
    acc = r.groupby(["activation", "model"]).test_acc.apply(mean_sd).unstack("model").reindex(order)
    lines += [md_table(acc), ""]
    keep = ["run_dir", "activation", "model", "seed"]
    if len(metrics):
        el = early_loss(metrics, r, keep)
        r = r.merge(el[["run_dir", "value"]].rename(columns={"value": "early_loss"}), on="run_dir", how="left")
        lines += ["## Train loss over the first logging window (steps 1-250 MLP/CNN, 1-50 RNN): speed of early "
                  "learning", "", md_table(r.groupby(["activation", "model"]).early_loss.mean().unstack()
                                           .reindex(order)), ""]
    for col, title, fmt in [("dead_fraction", "Dead fraction of hidden units at the end", "{:.3f}"),
                            ("saturated_fraction", "Saturated fraction at the end", "{:.3f}"),
                            ("gap", "Generalisation gap (train acc of the last window - test acc)", "{:.3f}"),
                            ("grad_norm_global", "Global gradient norm, mean over training", "{:.3g}"),
                            ("samples_per_s", "Training throughput, samples/s (shared CPU: noisy)", "{:.0f}")]:
        lines += [f"## {title}", "", md_table(r.groupby(["activation", "model"])[col].mean().unstack()
                                              .reindex(order), fmt), ""]
    bad = r[r.status != "ok"].groupby(["activation", "model", "status"]).size()
    if len(bad):
        lines += ["## Runs that did not finish ok", "", md_table(bad.rename("runs").reset_index()), ""]
    pairs = [("tanh", "sigmoid", "test_acc"), ("tanh", "sigmoid", "early_loss"),
             ("leaky_relu", "relu", "test_acc"), ("leaky_relu", "relu", "early_loss"),
             ("rrelu", "leaky_relu", "test_acc"), ("rrelu", "leaky_relu", "gap"), ("rrelu", "relu", "test_acc"),
             ("relu6", "relu", "test_acc"), ("relu6", "relu", "grad_norm_global"), ("tanh", "relu", "test_acc"),
             ("relu", "softmax", "test_acc"), ("relu", "sigmoid", "early_loss")]
    rows = []
    for a, b, value in pairs:
        if value not in r:
            continue
        for model in sorted(r.model.unique()):
            res = paired(r[r.model == model], value, [], a, b)
            rows.append({"a": a, "b": b, "metric": value, "model": model, **res})
    comp = pd.DataFrame(rows)
    lines += ["## Paired comparisons (same seed; diff = a - b, 95% t interval, paired t-test p, wins = seeds "
              "where a > b)", "", md_table(comp, "{:.3g}"), ""]
    comp.to_csv(out / "paired.csv", index=False)
    r[keep + ["status", "test_acc", "train_acc", "best_val_acc", "dead_fraction", "saturated_fraction",
              "grad_norm_global", "samples_per_s", "train_time_s"] + (["early_loss"] if "early_loss" in r else [])] \
        .to_csv(out / "summary.csv", index=False)
    speed = out / "activation_speed.csv"
    if speed.exists():
        lines += ["## Micro-benchmark (experiments/activation_speed.py)", "", md_table(pd.read_csv(speed), "{:.3g}"),
                  ""]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    sns.boxplot(data=r, x="activation", y="test_acc", hue="model", order=order, ax=ax, fliersize=2)
    ax.set(xlabel="", ylabel="test accuracy")
    lines += [save(fig, out, "test_acc.png"), ""]
    if len(metrics):
        tl = metrics[(metrics.split == "train") & (metrics.metric == "loss")].merge(r[keep], on="run_dir")
        grid = sns.relplot(data=tl, x="step", y="value", hue="activation", hue_order=order, col="model",
                           kind="line", height=3, aspect=1.1, facet_kws={"sharex": False})
        grid.set(yscale="log", ylabel="train loss")
        lines += [save(grid.figure, out, "train_loss.png"), ""]
    return lines


# ---------------------------------------------------------------- modern_activations


def modern_activations(runs, metrics, out: Path) -> list[str]:
    r = runs.copy()
    by = ["model", "dataset"]
    acc = r.groupby(["activation"] + by).test_acc.apply(mean_sd).unstack(by)
    acc.columns = [f"{m} / {d}" for m, d in acc.columns]
    rows = []
    for (model, dataset), part in r.groupby(by):
        for act in sorted(set(part.activation) - {"relu"}):
            rows.append({"activation": act, "model": model, "dataset": dataset,
                         **paired(part, "test_acc", [], act, "relu")})
    comp = pd.DataFrame(rows)
    comp.to_csv(out / "paired_vs_relu.csv", index=False)
    r[["activation", "model", "dataset", "seed", "status", "test_acc", "best_val_acc", "test_acc_at_best_val",
       "dead_fraction", "samples_per_s", "train_time_s"]].to_csv(out / "summary.csv", index=False)
    mean_rank = r.assign(rank=r.groupby(by + ["seed"]).test_acc.rank(ascending=False)) \
        .groupby("activation")["rank"].mean().sort_values()
    friedman = []
    for key, part in r.groupby(by):
        wide = part.pivot_table(index="seed", columns="activation", values="test_acc").dropna()
        if wide.shape[0] >= 2 and wide.shape[1] >= 3:
            friedman.append(f"{key[0]}/{key[1]}: chi2={stats.friedmanchisquare(*wide.T.values).statistic:.1f}, "
                            f"p={stats.friedmanchisquare(*wide.T.values).pvalue:.2g}")
    comp_view = comp.assign(**{"diff pp": (comp["diff"] * 100).round(2), "95% CI pp":
                               [f"[{lo * 100:+.2f}, {hi * 100:+.2f}]" for lo, hi in zip(comp.lo, comp.hi)]})
    fig, ax = plt.subplots(figsize=(10, 4))
    comp["setting"] = comp.model + "/" + comp.dataset
    acts, settings = sorted(comp.activation.unique()), sorted(comp.setting.unique())
    for j, (setting, color) in enumerate(zip(settings, sns.color_palette(n_colors=len(settings)))):
        part = comp[comp.setting == setting].set_index("activation").reindex(acts)
        x = np.arange(len(acts)) + (j - (len(settings) - 1) / 2) * 0.18
        ax.errorbar(x, part["diff"], yerr=[part["diff"] - part.lo, part.hi - part["diff"]], fmt="o",
                    color=color, capsize=3, label=setting)
    ax.set_xticks(range(len(acts)), acts)
    ax.legend(fontsize=8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(ylabel="test acc - ReLU's (paired by seed)", xlabel="")
    return ["## Test accuracy % (mean ± sd over seeds)", "", md_table(acc), "",
            "## Paired difference from ReLU (same seed, same data order)", "",
            "diff: test accuracy minus ReLU's, percentage points; 95% t interval; paired t-test p (uncorrected); "
            "wins: seeds on which the activation beat ReLU.", "",
            md_table(comp_view[["activation", "model", "dataset", "n", "diff pp", "95% CI pp", "p", "wins"]],
                     "{:.3g}"), "",
            "Friedman test across all activations, per setting: " + "; ".join(friedman) + ".", "",
            "Mean rank over all settings and seeds (1 = best): " +
            ", ".join(f"{a} {v:.2f}" for a, v in mean_rank.items()) + ".", "",
            save(fig, out, "paired_vs_relu.png"), ""]


# ---------------------------------------------------------------- lr_fairness


def lr_fairness(runs, metrics, out: Path) -> list[str]:
    r = runs.rename(columns={"config.trainer.lr": "lr"})
    grid = r.groupby(["activation", "lr"]).agg(val=("best_val_acc", "mean"), test=("test_acc_at_best_val", "mean"),
                                               n=("seed", "count"), diverged=("status", lambda s: (s != "ok").sum()))
    grid.reset_index().to_csv(out / "summary.csv", index=False)
    fixed_lr = 0.01
    fixed = grid.xs(fixed_lr, level="lr")
    best_lr = grid.val.unstack("lr").idxmax(axis=1)
    tuned = pd.DataFrame({"tuned lr": best_lr, "val at tuned": [grid.loc[(a, lr), "val"] for a, lr in best_lr.items()],
                          "test at tuned": [grid.loc[(a, lr), "test"] for a, lr in best_lr.items()],
                          f"test at lr={fixed_lr}": fixed.test})
    tuned["rank fixed"] = tuned[f"test at lr={fixed_lr}"].rank(ascending=False).astype(int)
    tuned["rank tuned"] = tuned["test at tuned"].rank(ascending=False).astype(int)
    tuned = tuned.sort_values("rank tuned")
    tau = stats.kendalltau(tuned["rank fixed"], tuned["rank tuned"])
    tuned.to_csv(out / "tuned.csv")
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=r, x="lr", y="best_val_acc", hue="activation", marker="o", ax=ax)
    ax.set(xscale="log", ylabel="best validation accuracy", xlabel="learning rate (Adam)")
    return ["## Validation accuracy (best over training, mean over seeds) per learning rate", "",
            md_table(grid.val.unstack("lr")), "",
            "## Tuned on validation, compared on test (test accuracy at the best-validation evaluation)", "",
            md_table(tuned), "",
            f"Kendall tau between the fixed-rate and the tuned ranking: {tau.statistic:.2f} (p={tau.pvalue:.2g}).",
            "", save(fig, out, "val_acc_vs_lr.png"), ""]


STUDIES = {f.__name__: f for f in [dying_relu, mnist1d_baselines, vanishing_gradients, article_claims,
                                   modern_activations, lr_fairness]}
NEEDS_METRICS = {"vanishing_gradients", "article_claims"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(STUDIES))
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path("results") / args.name
    out.mkdir(parents=True, exist_ok=True)
    # absolute paths: a run's `run_dir` column comes from its summary (absolute), its metrics' from the search path
    runs, metrics, skipped = load_runs(*[Path(p).resolve() for p in args.paths],
                                       with_metrics=args.name in NEEDS_METRICS)
    if len(metrics) and not set(metrics.run_dir) <= set(runs.run_dir):
        sys.exit("run folders were moved since they ran (summary run_dir differs from the folder): cannot join "
                 "metrics to runs")
    if not len(runs):
        sys.exit(f"no finished runs under {' '.join(args.paths)}")
    lines = header(args.name, args.paths, runs, skipped) + STUDIES[args.name](runs, metrics, out)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'report.md'}")


if __name__ == "__main__":
    main()
