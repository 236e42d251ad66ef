"""The table of a sweep's jobs, on the screen at the end of a sweep and in `python -m harness.sweeps.status DIR`: one
line per job (state, test accuracy, time, folder, note), names and notes cleaned and cut
(harness.common.text) to one screen line."""

from __future__ import annotations

import textwrap

from harness.common.text import NOTE_LIMIT, PATH_LIMIT, SCREEN_LIMIT, clean
from harness.training.console import fit, fmt

FIXED = 31  # the characters of a row besides its job name and note: state, test_acc, time_s and the gaps
NOTE_ROOM = 48  # what a long job name leaves its note at least, when a note is that long


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
        note = s.get("note") or "another process holds its job.lock"
    return fmt(s.get("test_acc"), ".4f"), fmt(s.get("train_time_s"), ".1f"), clean(note, NOTE_LIMIT)


def last_line(text: object) -> str:
    """The last line that is not blank (a traceback's exception), or the text itself."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else str(text)


def format_table(rows: list[tuple[str, str, dict | None]], wrap: bool = False) -> str:
    """The end-of-sweep table: one line per job (state, job name, summary), then the counts. Names and notes are
    shown cleaned (harness.common.text), so a job folder or an error message cannot drive the terminal, and each
    line fits one screen line (SCREEN_LIMIT): a long job name is cut in its middle, a long note at its end, or, with
    wrap (harness-status), goes on in the note's column on the lines below."""
    cells = [(state, job_line(state, summary)) for state, _, summary in rows]
    names = [clean(name, PATH_LIMIT) for _, name, _ in rows]
    note_room = min(max([len(note) for _, (_, _, note) in cells] + [len("note")]), NOTE_ROOM)
    room = SCREEN_LIMIT - FIXED - note_room
    if any(len(name) > room for name in names):
        names = apart(names)
    width = max(min(max([len(name) for name in names] + [3]), room), 3)
    lines = [f"{'status':<10} {'test_acc':>8} {'time_s':>7}  {'job':<{width}}  note"]
    for (state, (acc, secs, note)), name in zip(cells, names):
        room = SCREEN_LIMIT - FIXED - width
        notes = textwrap.wrap(note, room) if wrap and len(note) > room else [clean(note, room)]
        line = f"{clean(state, 10):<10} {acc:>8} {secs:>7}  {fit(name, width):<{width}}  {notes[0] if notes else ''}"
        lines += [line.rstrip()] + [" " * (FIXED + width) + more for more in notes[1:]]
    counts: dict[str, int] = {}
    for state, _, _ in rows:
        counts[state] = counts.get(state, 0) + 1
    lines.append(", ".join(f"{n} {clean(state, 12)}" for state, n in counts.items()) + f" of {len(rows)} jobs")
    return "\n".join(lines)


def apart(names: list[str]) -> list[str]:
    """Job folder names (`key=value,key=value,...`) shortened to the parts that tell them apart, when they are too
    long for the table: `seed=1` rather than a name cut in its middle, which may cut exactly that."""
    parts = [name.split(",") for name in names]
    shared = set.intersection(*map(set, parts)) if len(parts) > 1 else set()
    return [",".join(p for p in split if p not in shared) or name for split, name in zip(parts, names)]


def varying_label(jobs: list[dict], folder: str) -> str:
    """What tells a job from the sweep's others: its overrides whose values differ between the manifest's jobs
    (`seed=3 trainer.lr=0.01`), for a line too short for a whole folder name; the folder name when none differ."""
    values: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for job in jobs:
        for override in job.get("overrides") or []:
            key, _, value = str(override).partition("=")
            values.setdefault(key, set()).add(value)
            counts[key] = counts.get(key, 0) + 1
    varies = {key for key in values if len(values[key]) > 1 or counts[key] < len(jobs)}
    mine = next((job.get("overrides") or [] for job in jobs if job.get("dir") == folder), [])
    label = " ".join(str(o) for o in mine if str(o).partition("=")[0] in varies)
    return label or folder
