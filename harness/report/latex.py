"""tables.tex: the per-task results and the paired comparisons as booktabs tables, ready for a paper."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from harness.common import metrics
from harness.records.results import atomic_write
from harness.report.analysis import Analysis
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
    "<": "$<$",
    ">": "$>$",
}


def result_columns() -> list[str]:
    """The results table's identity columns, the registry's paper metrics (harness.common.metrics), the size."""
    first, *rest = [m.label for m in metrics.in_table() if m.paper]
    return ["activation", "setting", "seeds", first, "diverged", *rest, "n_params"]


def escape(text: object) -> str:
    """LaTeX-safe text: leaky_relu -> leaky\\_relu, 5% -> 5\\%, ± -> $\\pm$."""
    out = re.sub(r"[\\&%$#_{}~^]", lambda m: SPECIAL[m.group()], str(text))
    for char, tex in UNICODE.items():
        out = out.replace(char, tex)
    return out


def tabular(frame: pd.DataFrame, caption: str, label: str) -> str:
    """One booktabs table (toprule, midrule, bottomrule), every cell escaped."""
    spec = "l" * len(frame.columns)
    head = " & ".join(escape(c) for c in frame.columns) + r" \\"
    body = [" & ".join(escape(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    return "\n".join(
        [
            r"\begin{table}[ht]",
            r"\centering",
            r"\small",
            rf"\caption{{{escape(caption)}}}",
            rf"\label{{{label}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            head,
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


def label_of(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def write_latex(a: Analysis, path: Path) -> Path:
    """One results table per task and one comparison table per task, in a file to \\input (needs booktabs)."""
    parts = ["% Written by scripts/report.py --latex. Needs \\usepackage{booktabs}.", ""]
    chosen = a.summary[a.summary["chosen"]]
    for task, rows in chosen.groupby("task", sort=True):
        table = glance_table(rows)[result_columns()]
        parts.append(
            tabular(
                table,
                f"{task}: each activation at its setting chosen on validation accuracy; "
                "test accuracy at best validation, mean [95% CI] over seeds.",
                f"tab:results-{label_of(task)}",
            )
        )
    cmp = a.comparison
    for task, rows in cmp.groupby("task", sort=True) if not cmp.empty else []:
        table = pd.DataFrame(
            {
                "setting": rows["setting"].replace("", "-"),
                "activation": rows["act"],
                "pairs": rows["pairs"],
                f"Δ acc vs {a.baseline}": rows["diff_mean"].map(num),
                "95% CI (Bonferroni)": [
                    f"[{num(lo)}, {num(hi)}]" for lo, hi in zip(rows["diff_adj_low"], rows["diff_adj_high"])
                ],
                "p (Holm)": rows["p_t_holm"].map(p_value),
                "significant": rows["significant"].map({True: "yes", False: "no"}),
            }
        )
        parts.append(
            tabular(
                table,
                f"{task}: paired by seed against {a.baseline}; intervals Bonferroni-adjusted "
                "for the comparisons of one setting, p-values Holm-corrected (t-test).",
                f"tab:comparison-{label_of(task)}",
            )
        )
    text = "\n".join(parts)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), binary=True)  # a symlink at path is refused
    return path
