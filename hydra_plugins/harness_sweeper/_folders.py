"""The sweep's folders: the sweep folder pinned once and quoted for Hydra and the shell (the resume command), and
each job folder checked before any job starts (inside the sweep, a creatable name, no symlink where a job writes)."""
# Named with a leading underscore so that Hydra's plugin scanner leaves it alone: it runs every other module of
# hydra_plugins again, which would make BadSweep a new class and `except BadSweep` miss the one raised here.

import re
import shlex
import sys
from pathlib import Path

from omegaconf import DictConfig

from harness.common.outputs import SymlinkRefused, refuse_symlink, refuse_symlinks
from harness.common.text import NOTE_LIMIT, PATH_LIMIT, clean

LINE = PATH_LIMIT + NOTE_LIMIT  # a printed line naming a job folder and saying why (harness.common.text cuts it there)

MULTIRUN = "multirun.yaml"  # Hydra's record of the sweep's configuration (the first sweep's)


class BadSweep(Exception):
    """A sweep that must not start; the message is one line for the user."""


def quoted_override(key: str, value: str) -> str:
    """key='value' in Hydra's override grammar, whatever the value holds (spaces, brackets, quotes, backslashes).

    In a quoted value Hydra reads a backslash as itself, except in a run of backslashes just before a quote or
    the closing quote: there each pair is one backslash and a lone one escapes the quote. So only those runs are
    doubled (doubling one elsewhere would name another folder, with two backslashes) and each quote is escaped.
    """
    escaped = re.sub(r"(\\*)('|\Z)", lambda m: m[1] * 2 + ("\\'" if m[2] else ""), value)
    return f"{key}='{escaped}'"


def pin_sweep_dir(config: DictConfig) -> str:
    """Resolve the sweep dir once and hand it to every job as an override: `${now:}`/`${uid:}` never re-roll."""
    sweep_dir = str(Path(str(config.hydra.sweep.dir)).absolute())
    config.hydra.sweep.dir = sweep_dir
    kept = [o for o in config.hydra.overrides.hydra if not o.startswith("hydra.sweep.dir=")]
    config.hydra.overrides.hydra = kept + [quoted_override("hydra.sweep.dir", sweep_dir)]
    return sweep_dir


def resume_command(sweep_dir: str) -> str:
    """The command line that continues this sweep: the same arguments, resume=true and the pinned folder."""
    args = [a for a in sys.argv[1:] if not a.lstrip("+").startswith(("resume=", "hydra.sweep.dir="))]
    plain = re.fullmatch(r"[A-Za-z0-9_./-]+", sweep_dir)  # what Hydra reads unquoted (ASCII only)
    folder_override = f"hydra.sweep.dir={sweep_dir}" if plain else quoted_override("hydra.sweep.dir", sweep_dir)
    return " ".join(
        ["python", shlex.quote(sys.argv[0])]
        + [shlex.quote(a) for a in args]
        + ["resume=true", shlex.quote(folder_override)]
    )


def check_folder(sweep_dir: Path, name: str, outputs: tuple[str, ...] = ()) -> None:
    """Refuse a job folder that would lie outside its sweep, that no file system can create, or that is (or holds
    at one of the names a job writes, `outputs`) a symlink: the sweep's own folders are never written through."""
    parts = Path(name).parts
    outside = (
        f"job folder {clean(repr(name), PATH_LIMIT)} would lie outside the sweep folder: a value that names "
        "folders cannot hold '..' or start with '/'"
    )
    if Path(name).is_absolute() or ".." in parts:
        raise BadSweep(outside)
    long = next((p for p in parts if len(p.encode()) > 255), None)
    if long:
        raise BadSweep(
            f"job folder name {clean(repr(long[:60]))}... is longer than 255 bytes; shorten the swept values"
        )
    refuse_linked_job(sweep_dir, parts, outputs)
    if not (sweep_dir / name).resolve().is_relative_to(sweep_dir.resolve()):
        raise BadSweep(outside)


def refuse_linked_job(sweep_dir: Path, parts: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    """BadSweep when a folder from the sweep folder down to the job's, or a name the job writes, is a symlink (the
    sweep folder itself is the user's: followed if it is one)."""
    folder = sweep_dir
    try:
        for part in parts:
            folder = folder / part
            refuse_symlink(folder)
        refuse_symlinks(folder, outputs)
    except SymlinkRefused as exc:
        raise BadSweep(clean(exc, PATH_LIMIT)) from None


def job_outputs(config: DictConfig) -> tuple[str, ...]:
    """The names a job writes in its folder (its records, lock, crash log, Hydra's files and log)."""
    from harness.records.results import CHECKPOINT, METRICS, SUMMARY
    from harness.sweeps.joblock import LOCK
    from harness.sweeps.sweep import FAULT_LOG

    return SUMMARY, METRICS, CHECKPOINT, LOCK, FAULT_LOG, ".hydra", f"{config.hydra.job.name}.log"


def compact(exc: BaseException) -> str:
    """One line from Hydra's and OmegaConf's multi-line messages, without their search-path and full_key noise."""
    text = str(exc)
    if exc.__cause__ is not None and str(exc.__cause__) not in text:
        text += "\n" + str(exc.__cause__)
    text = text.split("\nConfig search path:")[0]
    text, found, options = text.partition("\n\nAvailable options in ")
    if found:  # a missing config-group option: name the valid ones on the same line
        group, _, names = options.partition(":")
        text += f"; valid {group}: " + ", ".join(names.split())
    noise = ("full_key:", "reference_type", "object_type")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(noise)]
    full_key = getattr(exc, "full_key", None)
    if full_key and lines and lines[0].endswith(f": {full_key.rpartition('.')[2]}"):  # name the whole key
        lines[0] = lines[0].rpartition(": ")[0] + f": {full_key}"
    return ": ".join(lines)
