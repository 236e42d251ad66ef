"""The table of a sweep's jobs, on the screen at the end of a sweep and in `python -m harness.sweeps.status DIR`: one
line per job (state, test accuracy, time, folder, note), names and notes cleaned and cut (harness.common.text)."""

from __future__ import annotations

from harness.common.text import NOTE_LIMIT, PATH_LIMIT, clean
from harness.training.console import fmt


def job_line(state: str, summary: dict | None) -> tuple[str, str, str]:
    """(test accuracy, train time, note) columns of one job; the note is clean text (harness.common.text)."""
    s = summary or {}
    note = ""
    if state == "diverged":
        note = f"diverged at step {s.get('diverged_at_step')}"
    elif state == "failed" and s.get("error"):
        note = last_line(s["error"])
    elif state in ("unfinished", "corrupt", "pending"):
        note = s.get("note") or ("corrupt summary.json" if state == "corrupt" else "no summary.json")
    elif state == "running":
        note = "another process holds its job.lock"
    return fmt(s.get("test_acc"), ".4f"), fmt(s.get("train_time_s"), ".1f"), clean(note, NOTE_LIMIT)


def last_line(text: object) -> str:
    """The last line that is not blank (a traceback's exception), or the text itself."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else str(text)


def format_table(rows: list[tuple[str, str, dict | None]]) -> str:
    """The end-of-sweep table: one line per job (state, job name, summary), then the counts. Names and notes are
    shown cleaned and cut (harness.common.text): a job folder or an error message cannot drive the terminal."""
    names = [clean(name, PATH_LIMIT) for _, name, _ in rows]
    width = max([len(name) for name in names] + [3])
    lines = [f"{'status':<10} {'test_acc':>8} {'time_s':>7}  {'job':<{width}}  note"]
    for (state, _, summary), name in zip(rows, names):
        acc, secs, note = job_line(state, summary)
        lines.append(f"{clean(state, 12):<10} {acc:>8} {secs:>7}  {name:<{width}}  {note}".rstrip())
    counts: dict[str, int] = {}
    for state, _, _ in rows:
        counts[state] = counts.get(state, 0) + 1
    lines.append(", ".join(f"{n} {clean(state, 12)}" for state, n in counts.items()) + f" of {len(rows)} jobs")
    return "\n".join(lines)
