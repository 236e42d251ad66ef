"""Comparison reports: statistics across seeds, seaborn and plotly figures, one HTML page, one Markdown file
and, on request, LaTeX tables. The top layer: May import `harness.common`, `harness.networks`, `harness.setup`,
`harness.records`, `harness.trackers`, `harness.training` and `harness.sweeps`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.report.errors import ReportError

__all__ = ["ReportError", "build_report"]


def build_report(
    paths: Sequence[str | Path],
    baseline: str | None = None,
    out: str | Path | None = None,
    figures: bool = True,
    latex: bool = False,
) -> Path:
    """Build a report from the runs under paths; see harness.report.build.build_report."""
    from harness.report.build import build_report as build  # seaborn and scipy load here, not at import

    return build(paths, baseline=baseline, out=out, figures=figures, latex=latex)
