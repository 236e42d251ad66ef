"""What a command needs of the machine before Hydra writes anything: a folder it can create and write, a sweep with
jobs in it, and a launcher that can start them. Each failure is one line (BadCommand) naming the key to change."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig

from harness.sweeps.launchers import launcher_kind

GIB = 2**30
SLURM_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}  # SLURM's --mem units; a bare number is in M


class BadCommand(Exception):
    """One line for the user: the command cannot work, nothing was written."""


def check_folder(key: str, folder: str) -> Path:
    """A run or sweep folder that can be created and written: named, each name at most 255 bytes, not under a
    file, in a folder this process may write, on a disk that takes a write. Returns it as a Path."""
    if not folder.strip():
        raise BadCommand(f"{key} is empty; name a folder, or leave {key} out for a new one")
    path = Path(folder)
    long = next((part for part in path.parts if len(part.encode()) > 255), None)
    if long:
        raise BadCommand(
            f"{key}: the folder name {long[:40]!r}... is {len(long.encode())} bytes long; a file system "
            "takes at most 255"
        )
    existing = next(p for p in [path.absolute(), *path.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise BadCommand(
            f"{key}={folder} is a file, not a folder"
            if existing == path.absolute()
            else f"{key}={folder} lies under {existing}, which is a file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadCommand(f"{key}={folder} cannot be written: {existing} is read-only for this user")
    check_disk_takes_a_write(key, folder, existing)
    return path


def check_disk_takes_a_write(key: str, folder: str, existing: Path) -> None:
    """Write and sync 4 KiB in the folder's nearest existing parent, then remove it: a full disk (ENOSPC, a quota)
    or a read-only file system refuses here, in one line, rather than in the middle of Hydra's first write."""
    try:
        fd, name = tempfile.mkstemp(prefix=".harness-write-check-", dir=existing)
    except OSError as exc:
        raise BadCommand(f"{key}={folder} cannot be written: {exc.strerror or exc}") from None
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)  # delayed allocation reports a full disk here, not at the write
    except OSError as exc:
        raise BadCommand(f"{key}={folder} cannot be written: {exc.strerror or exc} ({existing})") from None
    finally:
        os.close(fd)
        os.unlink(name)


def check_sweep_has_jobs(parsed: list) -> None:
    """A sweep over no values (seed=range(0,0)) would write its folder and run nothing."""
    for override in parsed:
        if override.is_sweep_override() and override.is_discrete_sweep():
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # a glob needs the config loader: the sweeper expands it
                continue
            if not values:
                raise BadCommand(f"{override.input_line} sweeps no values: the sweep would have no jobs")


# The Hydra plugin each launcher preset needs; without it Hydra cannot even compose the preset.
LAUNCHER_PLUGINS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher",
    "slurm": "hydra_plugins.hydra_submitit_launcher",
    "submitit": "hydra_plugins.hydra_submitit_launcher",
}


def check_launcher_installed(parsed: list) -> None:
    """hydra/launcher=joblib or =slurm_* without the launchers extra: say how to install it, where Hydra would say
    only that it cannot find or load the preset."""
    for override in parsed:
        if override.key_or_group != "hydra/launcher" or override.is_sweep_override():
            continue
        choice = str(override.value())
        plugin = next((m for word, m in LAUNCHER_PLUGINS.items() if word in choice), None)
        if plugin and importlib.util.find_spec(plugin) is None:
            raise BadCommand(f"hydra/launcher={choice} needs the launchers extra: pip install -e '.[launchers]'")


def check_launcher(hydra: DictConfig) -> None:
    """The sweeper's and the launcher's own preconditions, which they would find only after writing the sweep
    folder: a batch size of at least 1, joblib's n_jobs != 0, SLURM's sbatch and the submitit package."""
    batch = hydra.sweeper.get("max_batch_size")
    if batch is not None and batch < 1:
        raise BadCommand(f"hydra.sweeper.max_batch_size={batch}: expected an integer >= 1, or null for one batch")
    launcher = hydra.launcher
    kind = launcher_kind(launcher)
    if kind == "joblib" and launcher.get("n_jobs") == 0:
        raise BadCommand("hydra.launcher.n_jobs=0 runs no jobs: use a count >= 1, or -1 for every core")
    if kind == "submitit_slurm":
        choice = hydra.runtime.choices.get("hydra/launcher")
        if importlib.util.find_spec("submitit") is None:
            raise BadCommand(
                f"hydra/launcher={choice} needs the submitit package of the launchers extra: "
                "pip install -e '.[launchers]'"
            )
        if shutil.which("sbatch") is None:
            raise BadCommand(
                f"hydra/launcher={choice} needs SLURM, and sbatch is not on PATH here; run the sweep "
                "from a SLURM login node, or use hydra/launcher=joblib on this machine"
            )


def launcher_memory(launcher: DictConfig) -> tuple[int, str] | None:
    """(bytes, what) a SLURM launcher asks for each job: mem_gb, else mem_per_cpu x cpus_per_task, else mem_per_gpu
    x gpus; None where it asks for none (the job gets the machine's memory)."""
    if launcher.get("mem_gb"):
        return int(launcher.mem_gb * GIB), f"the memory hydra.launcher.mem_gb={launcher.mem_gb} asks for each job"
    for key, count in (("mem_per_cpu", "cpus_per_task"), ("mem_per_gpu", "gpus_per_node")):
        if launcher.get(key):
            per = slurm_bytes(str(launcher[key]))
            n = int(launcher.get(count) or 1)
            return per * n, f"the memory hydra.launcher.{key}={launcher[key]} x {count}={n} asks for each job"
    return None


def slurm_bytes(text: str) -> int:
    """SLURM's memory size: 4000 (MiB), 4G, 512M, 1T; BadCommand for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text.upper())
    if not match:
        raise BadCommand(f"cannot read the launcher's memory size {text!r}: expected e.g. 4000, 512M or 4G")
    return int(float(match[1]) * SLURM_UNITS[match[2] or "M"])
