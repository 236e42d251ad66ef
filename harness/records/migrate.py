"""`python -m harness.records.migrate DIR ...`: every summary.json under the folders written as schema 2, once (what
harness.records.upgrade.upgrade makes of it; the readers apply the same upgrade in memory), the schema-1 file kept
beside it as summary.v1.json. Unreadable summaries are listed and left as they are."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from harness.records.results import SUMMARY, atomic_write, finite_or_none
from harness.records.schema import SCHEMA_VERSION, Unreadable, read_record, read_summary_file

KEPT = "summary.v1.json"


def migrate(run_dir: Path) -> bool:
    """Write run_dir's summary.json as schema 2 (True), the schema-1 file kept as summary.v1.json; False if it is
    already schema 2. Raises harness.records.schema.Unreadable for a summary the reader refuses."""
    path = Path(run_dir) / SUMMARY
    upgraded = read_summary_file(path)  # checked (Unreadable for a damaged one), then upgraded
    if json.loads(read_record(path))["schema_version"] == SCHEMA_VERSION:
        return False
    shutil.copy2(path, path.with_name(KEPT))
    text = json.dumps(finite_or_none(upgraded), indent=2, allow_nan=False)  # as write_summary writes it, but
    atomic_write(path, lambda f: f.write(text + "\n"))  # with the recorded checksums kept: they are still checked
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Upgrade every summary.json under the folders to schema 2.")
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not f.exists()]
    if missing:
        print(f"no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    counts = {"upgraded": 0, "already schema 2": 0, "unreadable": 0}
    for folder in args.folders:
        for summary in sorted(folder.rglob(SUMMARY)):
            try:
                counts["upgraded" if migrate(summary.parent) else "already schema 2"] += 1
            except Unreadable as exc:
                counts["unreadable"] += 1
                print(f"{summary}: unreadable, left as it is ({exc})", file=sys.stderr)
    print(", ".join(f"{n} {what}" for what, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
