"""Command line: turn any folders of runs into a comparison report (tables, figures, report.md, report.html)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, sweep folders, or folders of them")
    parser.add_argument("--baseline", default=None, help="activation every other is compared with (default: relu)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: report/ beside the runs)")
    parser.add_argument("--no-figures", action="store_true", help="tables and text only (much faster)")
    parser.add_argument("--latex", action="store_true", help="also write tables.tex (booktabs tables for a paper)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")  # files only: no window, no display needed
    from harness.report import ReportError, build_report

    try:
        out = build_report(
            args.paths, baseline=args.baseline, out=args.out, figures=not args.no_figures, latex=args.latex
        )
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {out / 'report.html'}\n        {out / 'report.md'}")
    if args.latex:
        print(f"        {out / 'tables.tex'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
