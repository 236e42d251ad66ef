"""What the report shows of names it did not choose. Activations, tasks and settings come from summary.json (a
user's activation name, a config value): the CSV tables keep them whole, as data; report.md, the HTML page, the
figures and tables.tex show them cleaned and cut (harness.common.text.clean), so that a control byte cannot reach a
reader's terminal and a 5 MB name cannot stall matplotlib.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pandas as pd

from harness.common.text import NAME_LIMIT, clean
from harness.report.analysis import Analysis

LABELS = ("task", "act", "setting", "baseline")  # the report's label columns, wherever a frame has them
MARK = 8  # characters of " #" plus a hash that keep two cut names apart


def shown_label(text: str) -> str:
    """text as a report shows it: unchanged when it is clean and short; else cleaned, cut, and marked with a hash of
    the whole, so that two names that differ only past the cut (or in control characters) stay apart."""
    text = str(text)
    label = clean(text, NAME_LIMIT)
    if label == text:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[: MARK - 2]
    return f"{clean(text, NAME_LIMIT - MARK)} #{digest}"


def label_map(a: Analysis) -> dict[str, str]:
    """Every label value of the analysis that is shown differently from what it is: value -> shown label."""
    values = {a.baseline}
    for column in ("task", "act", "setting"):  # every label value is one of the runs'
        values.update(a.data.runs[column].astype(str).unique())
    return {v: s for v in values if (s := shown_label(v)) != v}


def relabel(frame: pd.DataFrame | None, names: dict[str, str]) -> pd.DataFrame | None:
    """frame with its label columns shown (other columns, and other values such as 'at best val setting', as they
    are)."""
    if frame is None or frame.empty:
        return frame
    changed = {c: frame[c].replace(names) for c in LABELS if c in frame.columns}
    return frame.assign(**changed) if changed else frame


def shown_analysis(a: Analysis) -> Analysis:
    """The analysis with every label as the report shows it; the same object when every label is clean and short."""
    names = label_map(a)
    if not names:
        return a
    data = dataclasses.replace(
        a.data,
        runs=relabel(a.data.runs, names),
        metrics=relabel(a.data.metrics, names),
        layers=relabel(a.data.layers, names),
        costs=relabel(a.data.costs, names),
    )
    return dataclasses.replace(
        a,
        data=data,
        baseline=names.get(a.baseline, a.baseline),
        summary=relabel(a.summary, names),
        tuned=relabel(a.tuned, names),
        comparison=relabel(a.comparison, names),
        ranks=relabel(a.ranks, names),
        means=a.means.rename(index=names, columns=names),
    )
