"""Command line: send any folders of runs (a run, a sweep, a study, results/) to TensorBoard or MLflow, as live
logging would have (docs/trackers.md); exporting twice, or runs logged live, adds nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TO = ("tensorboard", "mlflow", "many")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, sweep folders, or folders of them")
    parser.add_argument(
        "--to", choices=TO, required=True, help="tensorboard (event files in each run's folder), mlflow, or many (both)"
    )
    parser.add_argument(
        "--uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)"
    )
    parser.add_argument("--experiment", default="activation-harness", help="MLflow experiment (default: %(default)s)")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not p.is_dir()]
    if missing:
        print(f"error: {missing[0]} is not a folder", file=sys.stderr)
        return 2

    from harness.setup.config import LoggerConfig
    from harness.trackers.export import export
    from harness.trackers.live import TrackerError

    logger = LoggerConfig(name=args.to, mlflow_uri=args.uri, experiment=args.experiment)
    try:
        done = export(args.paths, logger)
    except TrackerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.to}: {done.sent} run(s) sent, {done.there} already there, {done.skipped} folder(s) without a "
        "readable summary.json left out"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
