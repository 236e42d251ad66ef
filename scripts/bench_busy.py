"""Does the default run survive a busy machine? `python run.py` alone and beside a CPU-bound process, side by side.

    python scripts/bench_busy.py [--threads auto,null] [--repeats 2] [HYDRA_OVERRIDE ...]

For each trainer.threads setting it runs `python run.py` (the default config plus any overrides), alternately
alone and beside one busy neighbour (a Python spin loop, one core's worth of CPU-bound work), --repeats times each,
the order alternating. It prints, per setting and condition, the median training samples/s by wall time (what a
user waits for), the command's own wall time, busy / alone (the target: >= 0.8 for the default), and busy / alone
by the run's own speed_clock (thread CPU time on one thread: what the report compares). The load average before
and after is printed beside it: "alone" means alone but for whatever else the machine is running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def one_run(folder: Path, threads: str, overrides: list[str], busy: bool) -> tuple[float, float, int, float]:
    """(samples/s by wall time, the command's wall seconds, threads used, samples/s by the run's speed_clock)."""
    neighbour = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        begin = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "run.py"),
                f"hydra.run.dir={folder}",
                "trainer.progress=false",
                f"trainer.threads={threads}",
                *overrides,
            ],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        seconds = time.perf_counter() - begin
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    summary = json.loads((folder / "summary.json").read_text())
    return summary["samples_per_s"], seconds, summary["num_threads"], summary["clock_samples_per_s"]


def main(argv: list[str] | None = None) -> int:
    from harness.training.bench import OneLineParser

    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="auto", help="comma-separated trainer.threads settings (default auto)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting and condition (default 2)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=cnn")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    lines = [
        f"# default run alone and beside one busy process, {os.cpu_count()} CPUs, load before "
        f"{os.getloadavg()[0]:.2f}; overrides: {' '.join(args.overrides) or 'none'}",
        "",
        "| trainer.threads | threads used | samples/s alone | samples/s busy | busy / alone | run s alone "
        "| run s busy | busy / alone by speed_clock |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads.split(","):
            got = {False: [], True: []}
            for i in range(args.repeats):
                for busy in (False, True) if i % 2 == 0 else (True, False):
                    got[busy].append(one_run(Path(tmp) / f"{threads}-{i}-{busy}", threads, args.overrides, busy))
                    print(
                        f"  threads={threads} {'busy' if busy else 'alone'}: {got[busy][-1][0]:,.0f} samples/s, "
                        f"{got[busy][-1][1]:.1f} s",
                        file=sys.stderr,
                    )
            alone, busy = (statistics.median(r[0] for r in got[b]) for b in (False, True))
            secs = [statistics.median(r[1] for r in got[b]) for b in (False, True)]
            by_clock = statistics.median(r[3] for r in got[True]) / statistics.median(r[3] for r in got[False])
            lines.append(
                f"| {threads} | {got[False][0][2]} | {alone:,.0f} | {busy:,.0f} | {busy / alone:.2f} "
                f"| {secs[0]:.1f} | {secs[1]:.1f} | {by_clock:.2f} |"
            )
    lines.append(f"\nload after {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
