"""The one sanitiser of text the harness did not choose (names and values from summary.json, sweep.json, the
command line) before a screen or a human-readable report shows it (docs/reliability.md, "Text it shows").

A terminal obeys escape sequences: ESC [ ... moves the cursor or recolours, OSC 52 writes the clipboard, and
unicode bidi overrides make text read differently from what it is. clean() removes all of them and cuts what is
left to a stated length, so a hostile or merely huge name cannot take over a screen or stall a report.
"""

from __future__ import annotations

import re

ELLIPSIS = "…"
NAME_LIMIT = 120  # an activation, a task or a setting on a screen, in a table or a figure
PATH_LIMIT = 512  # a job folder or a path (each part of a job folder is at most 255 bytes: the sweeper checks)
NOTE_LIMIT = 240  # a note or an error's last line
SCREEN_LIMIT = 120  # one screen line: every line the harness prints or logs to a console, a log line's prefix
# included (the detail goes to the log file only: FILE_ONLY); a path or command to copy is shown whole on its own line
FILE_ONLY = {"file_only": True}  # extra= of a log record for the job's log file, kept off the console

# Whole escape sequences first, so that their parameters do not survive as visible junk: CSI (ESC [ or 0x9b, up to
# its final byte), the string commands OSC, DCS, SOS, PM and APC (ESC ] P X ^ _, or 0x9d 0x90 0x98 0x9e 0x9f, up to
# BEL, ST or the end of the text), and the short ESC sequences (ESC, intermediates, one final byte).
SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
)
# Then every control character left: C0 (whitespace ones become a space), DEL, C1, and the bidi controls (ALM,
# LRM, RLM, the embeddings and overrides LRE..RLO, the isolates LRI..PDI).
WHITESPACE = re.compile(r"[\t\n\v\f\r]+")
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: object, limit: int | None = None) -> str:
    """text (any value: str() of it) without escape sequences, control characters and bidi controls, cut to at
    most `limit` characters with an ellipsis at the end when anything was cut."""
    text = str(text)
    window = None if limit is None else 4 * limit + 64
    cut = window is not None and len(text) > window
    if cut:
        # Only the start can be shown: cleaning a bounded window keeps a 5 MB name as fast as a short one. A cut
        # through an escape sequence leaves at worst printable characters, never a live sequence.
        text = text[:window]
    text = CONTROLS.sub("", WHITESPACE.sub(" ", SEQUENCES.sub("", text)))
    if limit is not None and (cut or len(text) > limit):
        return text[: max(limit - 1, 0)] + ELLIPSIS
    return text
