"""tables.tex: one booktabs table per question of the first screen (accuracy, stability, dead units, gradient flow,
cost), each activation at its chosen setting, each table at most MAX_COLUMNS columns and sized to fit a page."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from harness.common import metrics
from harness.records.results import atomic_write
from harness.report.analysis import BEST, Analysis
from harness.report.headline import glance_table
from harness.report.render import num, p_value

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
UNICODE = {
    "±": r"$\pm$",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "–": "--",
    "‖∇W‖": r"$\|\nabla W\|$",
    "≥": r"$\geq$",
    "µ": r"$\mu$",
    "<": "$<$",
    ">": "$>$",
}
MAX_COLUMNS = 7  # what a page's width holds legibly at \small
MAX_ROWS = 40  # rows of one table on a page at \small; a longer one continues in the next table
WIDE = 95  # characters of the widest row above which a table is scaled to \linewidth
FOLDED = ("task", "setting", "machine")  # columns with one value in a table go into its caption instead


def escape(text: object) -> str:
    """LaTeX-safe text: leaky_relu -> leaky\\_relu, 5% -> 5\\%, ± -> $\\pm$."""
    out = re.sub(r"[\\&%$#_{}~^]", lambda m: SPECIAL[m.group()], str(text))
    for char, tex in UNICODE.items():
        out = out.replace(char, tex)
    return out


def fits_width(frame: pd.DataFrame) -> bool:
    """Whether the widest row (its longest cell per column) fits \\linewidth at \\small without scaling."""
    widths = [max([len(str(c)), *(len(str(v)) for v in frame[c])]) + 2 for c in frame.columns]
    return sum(widths) <= WIDE


def tabular(frame: pd.DataFrame, caption: str, label: str) -> str:
    """One booktabs table (toprule, midrule, bottomrule), every cell escaped, scaled to \\linewidth if too wide."""
    spec = "l" * len(frame.columns)
    head = " & ".join(escape(c) for c in frame.columns) + r" \\"
    body = [" & ".join(escape(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    rows = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", head, r"\midrule", *body, r"\bottomrule", r"\end{tabular}"]
    if not fits_width(frame):
        rows = [r"\resizebox{\linewidth}{!}{%", *rows, "}"]
    return "\n".join(
        [r"\begin{table}[ht]", r"\centering", r"\small", rf"\caption{{{escape(caption)}}}", rf"\label{{{label}}}"]
        + rows
        + [r"\end{table}", ""]
    )


def label_of(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def fold(frame: pd.DataFrame, caption: str) -> tuple[pd.DataFrame, str]:
    """Columns of FOLDED with one value in the whole table move into the caption ('task: digits / mlp')."""
    said = []
    for column in FOLDED:
        if column in frame and frame[column].nunique() == 1 and len(frame) > 0:
            said.append(f"{column}: {frame[column].iloc[0]}")
            frame = frame.drop(columns=column)
    return frame, caption + (f" ({'; '.join(said)})" if said else "")


def pages(frame: pd.DataFrame, caption: str, label: str) -> list[str]:
    """The table, cut into tables of at most MAX_ROWS rows (the later ones captioned as continued)."""
    frame, caption = fold(frame, caption)
    assert len(frame.columns) <= MAX_COLUMNS, list(frame.columns)  # each question's columns are chosen to fit
    parts = []
    for k, start in enumerate(range(0, max(len(frame), 1), MAX_ROWS)):
        more = " (continued)" if k else ""
        parts.append(tabular(frame.iloc[start : start + MAX_ROWS], caption + more, label + (f"-{k + 1}" if k else "")))
    return parts


def chosen_rows(a: Analysis) -> pd.DataFrame:
    """One summary row per task x activation: its chosen setting, best accuracy first within a task."""
    chosen = a.summary[a.summary["chosen"]].drop_duplicates(["task", "act"])
    return chosen.sort_values(["task", "acc_mean"], ascending=[True, False], na_position="last")


def identity(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"task": s["task"].to_numpy(), "activation": s["act"].to_numpy()})


def metric_table(s: pd.DataFrame, answer: list[metrics.Metric]) -> pd.DataFrame:
    """The results table's cells (harness.report.headline.glance_table) of these metrics, with task and activation."""
    cells = glance_table(s)
    table = identity(s)
    for m in answer:
        if m.label:
            table[m.label] = cells[m.label].to_numpy()
    return table


def accuracy_table(a: Analysis, s: pd.DataFrame) -> pd.DataFrame:
    """Accuracy, and the paired difference to the baseline at the chosen settings (Bonferroni interval, Holm p)."""
    table = identity(s)
    table["setting"] = s["setting"].to_numpy()
    table["seeds"] = s["seeds"].to_numpy()
    table = pd.concat([table, metric_table(s, metrics.answering("accuracy")).iloc[:, 2:]], axis=1)
    cmp = a.comparison
    if not cmp.empty:
        cmp = cmp[cmp["setting"].isin([BEST, ""])].drop_duplicates(["task", "act"]).set_index(["task", "act"])
    keys = list(zip(s["task"], s["act"]))
    found = [cmp.loc[k] if not cmp.empty and k in cmp.index else None for k in keys]
    table[f"Δ vs {a.baseline} [adj. CI]"] = [
        "--" if r is None else f"{num(r['diff_mean'])} [{num(r['diff_adj_low'])}, {num(r['diff_adj_high'])}]"
        for r in found
    ]
    table["p (Holm)"] = ["--" if r is None else p_value(r["p_t_holm"]) for r in found]
    return table


def stability_table(s: pd.DataFrame) -> pd.DataFrame:
    table = identity(s)
    table["seeds"] = s["seeds"].to_numpy()
    table["diverged"] = [f"{d}/{n}" for d, n in zip(s["diverged"], s["seeds"])]
    return pd.concat([table, metric_table(s, metrics.answering("stability")).iloc[:, 2:]], axis=1)


def cost_table(a: Analysis, s: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The size of each model (n_params, the matched width) and, where the cost probe recorded them, time per step
    and memory per step as the report shows them (harness.report.cost); the comment says what is left out."""
    cells = glance_table(s)
    sizes = identity(s).assign(n_params=cells["n_params"].to_numpy(), **{"matched width": cells["matched width"]})
    costs = getattr(a.data, "costs", None)
    probe = pd.DataFrame()
    if costs is not None and len(costs):
        from harness.report import cost

        probe = cost.cost_table(costs, a.tuned, a.baseline)
    if probe.empty:
        note = (
            "% Cost: time per step and memory are left out: these runs have no cost probe records (the report never "
            "shows a run's own timing); the table gives the models' sizes."
        )
        return sizes, note
    from harness.report.cost_text import size, timed, times

    shown = pd.DataFrame(
        {
            "task": probe["task"],
            "activation": probe["act"],
            "machine": probe["machine"],
            "time per step [95% CI]": [
                timed(v, lo, hi) + ("" if math.isnan(r) else f" ({times(r, math.nan, math.nan)})")
                for v, lo, hi, r in zip(probe["step_s"], probe["step_low"], probe["step_high"], probe["step_ratio"])
            ],
            "memory per step": probe["memory_bytes"].astype(float).map(size),
        }
    )
    return shown.merge(sizes, on=["task", "activation"], how="left").fillna("n/a"), ""


def question_tables(a: Analysis) -> list[tuple[str, pd.DataFrame, str]]:
    """(question, table, LaTeX comment) for the five questions."""
    s = chosen_rows(a)
    cost, note = cost_table(a, s)
    return [
        ("accuracy", accuracy_table(a, s), ""),
        ("stability", stability_table(s), ""),
        ("dead units", metric_table(s, metrics.answering("dead units")), ""),
        ("gradient flow", metric_table(s, metrics.answering("gradient flow")), ""),
        ("cost", cost, note),
    ]


CAPTIONS = {
    "accuracy": "Test accuracy at best validation, mean [95% CI] over seeds, each activation at its setting chosen on "
    "validation accuracy; the difference to {baseline} is paired by seed, its interval Bonferroni-adjusted and its "
    "p-value Holm-corrected (t-test).",
    "stability": "Diverged seeds, and the validation drawdown (the largest fall of validation accuracy below its "
    "running best, in accuracy points): mean over seeds, worst seed in brackets.",
    "dead units": "Units dead at initialisation, lost in training (alive at step 0, dead at the end) and dead at the "
    "end: mean fractions over layers and seeds; the activation sparsity at the end (outputs exactly zero, the "
    "CETT-based sparsity at CETT 0.2 in the MLP and transformer FFN, outputs near zero): fractions over the network.",
    "gradient flow": "The head's weight-gradient norm over the first hidden layer's, at initialisation and averaged "
    "over training: geometric mean over seeds (1 = even).",
    "cost": "Size of each model: n_params and the width model.match_params matches (units, channels, hidden size, "
    "or the transformer's FFN width d_ff); where the cost probe recorded them, time per step (ratio to {baseline}) "
    "and memory per step.",
}


def write_latex(a: Analysis, path: Path) -> Path:
    """One table per question, in a file to \\input (needs booktabs and graphicx)."""
    parts = ["% Written by scripts/report.py --latex. Needs \\usepackage{booktabs} and \\usepackage{graphicx}.", ""]
    for question, table, note in question_tables(a):
        if note:
            parts.append(note)
        caption = CAPTIONS[question].format(baseline=a.baseline)
        parts += pages(table, caption, f"tab:{label_of(question)}")
    text = "\n".join(parts)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), binary=True)  # a symlink at path is refused
    return path
