"""Write a study's committed report (report.md, summary.csv, figures/) from its sweep folders.

    python experiments/study_report.py NAME SWEEP_DIR [SWEEP_DIR ...] [--out results/NAME]

NAME is one of the studies in conf/experiment/: dying_relu, mnist1d_baselines, vanishing_gradients, article_claims,
modern_activations, lr_fairness, transformer_ffn, ffn_activations. The tables here are the evidence that
experiments/NAME.md quotes.
Statistics, tables, Markdown and figure style are harness.report's (one pipeline); experiments/studies.py,
comparison_studies.py, rate_studies.py and ffn_studies.py hold only what each study asks of its runs.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from harness.records.results import load_runs
from harness.report import render

EXIT_BAD_INPUT = 2


def timing(runs) -> str:
    """How long the runs took: wall span from first start to last finish, and the sum of job times, where a
    group job (its members share one process, docs/grouped.md) counts once, from its first start to last finish."""
    import pandas as pd

    start = pd.to_datetime(runs["started_at"], utc=True)
    end = pd.to_datetime(runs["finished_at"], utc=True)
    span = (end.max() - start.min()).total_seconds()
    job = runs["group.id"].fillna(runs["run_dir"]) if "group.id" in runs else runs["run_dir"]
    spans = (
        pd.DataFrame({"job": job, "start": start, "end": end})
        .groupby("job")
        .agg(start=("start", "min"), end=("end", "max"))
    )
    total = (spans.end - spans.start).dt.total_seconds().sum()
    grouped = f" in {len(spans)} jobs" if len(spans) < len(runs) else ""
    return (
        f"{len(runs)} runs{grouped}; wall time {span / 60:.1f} min from first start to last finish; "
        f"sum of job times {total / 60:.1f} min"
    )


def header(name: str, paths: list[str], runs, skipped) -> list:
    """Where the report comes from: the command, the runs, the code."""
    status = runs["status"].value_counts().to_dict()
    text = (
        f"Generated {datetime.datetime.now().astimezone().isoformat(timespec='minutes')} by "
        f"`python experiments/study_report.py {name} {' '.join(paths)}`; the write-up is "
        f"`experiments/{name}.md`. Runs: {timing(runs)}. Status: {status}."
        + (f" Skipped folders: {len(skipped)}." if len(skipped) else "")
    )
    blocks = [render.Text(text)]
    if runs["git_sha"].notna().any():
        blocks.append(
            render.Text(
                f"Code: git {', '.join(sorted(set(runs['git_sha'].dropna().str[:8])))}"
                f"{' (dirty tree)' if runs['git_dirty'].any() else ''}; torch "
                f"{', '.join(sorted(set(runs['torch_version'].dropna())))}; device "
                f"{', '.join(sorted(set(runs['device'].dropna())))}."
            )
        )
    return blocks


def build(name: str, paths: list[str], out: Path, draw: bool = True) -> Path:
    """Load the runs under paths, write out/report.md with the study's tables and figures; return its path."""
    from experiments import studies  # seaborn and scipy load here

    if name not in studies.STUDIES:
        raise ValueError(f"unknown study {name!r}; one of {', '.join(sorted(studies.STUDIES))}")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ValueError(f"no such folder: {missing[0]}")
    # absolute paths: runs and their metrics are joined on `run_dir`, the folder where load_runs found each run
    runs, metrics, skipped = load_runs(*[Path(p).resolve() for p in paths], with_metrics=name in studies.NEEDS_METRICS)
    if not len(runs):
        raise ValueError(f"no finished runs under {' '.join(paths)}")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    blocks = header(name, paths, runs, skipped) + studies.STUDIES[name](runs, metrics, out, draw)
    path = out / "report.md"
    path.write_text(render.to_markdown(f"Study report: {name}", blocks, out))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-figures", action="store_true", help="tables and text only, fast")
    args = parser.parse_args(argv)
    try:
        path = build(args.name, args.paths, args.out or Path("results") / args.name, not args.no_figures)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
