"""hydra.sweeper.group_size: which jobs of a sweep train together as one group (harness.training.group.run_group).

Jobs whose configurations are equal but for harness.training.group.MEMBER_KEYS (harness.training.group.group_key) share
groups of up to group_size members; a job that cannot be stacked runs alone, with one line why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from harness.common.text import SCREEN_LIMIT, clean
from harness.sweeps.launchers import LauncherConfig, jobs_at_once, launcher_kind

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from harness.setup.config import Config

GROUPS = ".groups"  # <sweep>/.groups/<id>/: a group job's own log, Hydra files and member list
MEMBERS = "group.json"
AUTO = "auto"
CPU_CAP, GPU_CAP = 16, 64  # members per group: past 16 the CPU gains stop growing (docs/grouped.md); a GPU's go on


class SweepJob(Protocol):
    """What grouping reads of one of the sweeper's jobs (hydra_plugins/harness_sweeper's Job)."""

    name: str  # its folder under the sweep dir
    overrides: list[str]
    config: Config
    hydra_files: dict | None  # its .hydra/config.yaml and overrides.yaml as Hydra writes them


J = TypeVar("J", bound=SweepJob)
D = TypeVar("D", bound="DataclassInstance")


def check_group_size(value: object) -> int | str:
    """group_size as given (an int >= 1 or 'auto'); ValueError with one line otherwise."""
    if str(value) == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"hydra.sweeper.group_size={value}: expected an integer >= 1 or 'auto'")
    return value


def on_gpu(device: str, launcher_cfg: LauncherConfig) -> bool:
    """Whether the jobs train on a GPU, judged where the sweep starts: a SLURM job asks for GPUs in its launcher
    config; a local one has the GPU this machine has."""
    if device != "auto":
        return device.startswith("cuda")
    if launcher_kind(launcher_cfg) == "submitit_slurm":
        return bool(launcher_cfg.get("gpus_per_node") or launcher_cfg.get("gpus_per_task"))
    import torch

    return torch.cuda.is_available()


def auto_size(groupable: int, n_workers: int, gpu: bool) -> int:
    """Members per group for `auto`: as many as fit while every worker still gets a group (sum over keys of
    ceil(n_key / size) >= groupable / size >= n_workers), at most the device's cap."""
    return max(1, min(GPU_CAP if gpu else CPU_CAP, groupable // max(1, n_workers)))


def split(names: list[str], size: int) -> list[list[str]]:
    """names in ceil(n / size) groups of near-equal size, in order (5 by 4: 3 + 2, not 4 + 1)."""
    count = math.ceil(len(names) / size)
    base, extra = divmod(len(names), count)
    groups, start = [], 0
    for i in range(count):
        end = start + base + (i < extra)
        groups.append(names[start:end])
        start = end
    return groups


def group_id(names: list[str]) -> str:
    """A short, stable id from the members' folder names: a rerun of the same group reuses its folder."""
    return "g" + hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]


def form_groups(keys: dict[str, str | None], size: int) -> list[list[str]]:
    """Job name -> its group_key (None: not groupable) to a list of groups (each a list of names; one-job runs
    are groups of one), in the jobs' order."""
    buckets: dict[str, list[str]] = {}
    for name, key in keys.items():
        buckets.setdefault(key if key is not None else f"\0{name}", []).append(name)
    groups = []
    for names in buckets.values():
        groups += split(names, size) if size > 1 else [[n] for n in names]
    order = {name: i for i, name in enumerate(keys)}
    return sorted(groups, key=lambda g: order[g[0]])


def write_members(sweep_dir: Path, gid: str, members: list[dict]) -> Path:
    """<sweep>/.groups/<id>/group.json: what the group job trains (each member's folder, overrides, varied values
    and its Hydra files as Hydra would write them)."""
    from harness.common.outputs import refuse_symlink
    from harness.records.results import atomic_write

    folder = Path(sweep_dir) / GROUPS / gid
    refuse_symlink(folder.parent)  # a link here would send every group's plan elsewhere
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"id": gid, "members": members}, indent=2) + "\n"
    atomic_write(folder / MEMBERS, lambda f: f.write(text))
    return folder


def read_members(group_dir: Path) -> dict:
    return json.loads((Path(group_dir) / MEMBERS).read_text())


def plan_groups(
    jobs: list[J], group_size: int | str, launcher_cfg: LauncherConfig, cpus: int
) -> tuple[list[list[J]], list[str]]:
    """The sweeper's jobs to run in groups (lists of jobs; one-job runs alone) and the lines that say how."""
    if group_size == 1 or len(jobs) < 2:
        return [[j] for j in jobs], []
    from harness.setup.resolve import resolve
    from harness.training.group import group_key, why_not_grouped

    keys: dict[str, str | None] = {}  # job name -> its group_key, None if it cannot be grouped
    why: dict[str, int] = {}  # why not grouped -> how many jobs
    for job in jobs:
        reason = why_not_grouped(resolve(job.config, device=False))
        keys[job.name] = None if reason else group_key(job.config)
        if reason:
            why[reason] = why.get(reason, 0) + 1
    lines = [clean(f"not grouped ({n} job(s)): {reason}", SCREEN_LIMIT) for reason, n in why.items()]
    groupable = [j for j in jobs if keys[j.name] is not None]
    if isinstance(group_size, int):
        size = group_size
    else:  # AUTO, the one other value check_group_size lets through
        gpu = any(on_gpu(j.config.trainer.device, launcher_cfg) for j in groupable)
        size = auto_size(len(groupable), jobs_at_once(launcher_cfg, cpus), gpu)
    by_name = {j.name: j for j in jobs}
    groups = [[by_name[n] for n in names] for names in form_groups(keys, size)]
    grouped = [g for g in groups if len(g) > 1]
    if grouped:
        lines.append(
            f"groups: {sum(map(len, grouped))} runs in {len(grouped)} group job(s) of up to {size} "
            f"(hydra.sweeper.group_size={group_size}), {len(groups) - len(grouped)} run(s) alone"
        )
    return groups, lines


def member_entry(job: SweepJob) -> dict:
    """What the group job needs of one member: its folder, overrides, the values it alone has (member_values) and
    its Hydra files."""
    return {
        "name": job.name,
        "overrides": job.overrides,
        "values": member_values(job.config),
        "hydra_files": job.hydra_files,
    }


def member_values(config: Config) -> dict[str, object]:
    """A member's values of what may differ within a group (harness.training.group.MEMBER_KEYS), by dotted key."""
    from harness.training.group import MEMBER_KEYS  # torch loads here, not when Hydra scans the plugins

    values = {}
    for path in MEMBER_KEYS:
        node: object = config
        for part in path:
            node = getattr(node, part)
        values[".".join(path)] = node
    return values


def with_member_values(config: Config, values: dict[str, object]) -> Config:
    """config (the group's first member's) with another member's member_values put in: that member's config."""
    from harness.training.group import MEMBER_KEYS

    for path in MEMBER_KEYS:
        config = replaced(config, path, values[".".join(path)])
    return config


def replaced(node: D, path: tuple[str, ...], value: object) -> D:
    """A copy of the nested dataclass node with the field at path set to value."""
    head, *rest = path
    return dataclasses.replace(node, **{head: replaced(getattr(node, head), tuple(rest), value) if rest else value})
