"""Outputs cannot be redirected (docs/reliability.md): the harness never writes through, or deletes through, a
symlink inside the folders it creates (run and sweep folders, a report's folder and its figures/).

A symlink the user gave (a results/ or sweep folder on scratch storage, as on clusters) or one above the folder a
tool creates is followed: only the names a tool writes are checked, never the folders leading to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class SymlinkRefused(OSError):
    """A path the harness would write or delete is a symlink; the message is one line."""


def refuse_symlink(path: Path) -> None:
    """Raise SymlinkRefused when path itself is a symlink (a dangling one too)."""
    if Path(path).is_symlink():
        raise SymlinkRefused(
            f"{path} is a symlink: the harness does not write through it; remove it or choose another folder"
        )


def refuse_symlinks(folder: Path, names: Iterable[str]) -> None:
    """refuse_symlink for each of the names inside folder."""
    for name in names:
        refuse_symlink(Path(folder) / name)
