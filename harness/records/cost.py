"""The cost probe's records: one file per sweep, `<sweep>/.cost/cost.json`, read and written only here.

The probe (harness.training.cost) times a training step and a forward pass of each distinct cost setting of a sweep
(what changes a step's cost: activation and its parameters, model, dataset shape, batch size, precision, device,
threads, optimizer; never the seed or the learning rate), alone and outside any group. Settings measured in one probe
job share its rounds: round r of every setting ran in the same pass, so that a machine's drift falls on all of them
alike and two settings' times pair by round. The report shows no other speed or memory figure.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from harness.records.results import atomic_write
from harness.records.schema import STRICT, Count, Unreadable, read_record, validated

if TYPE_CHECKING:
    from harness.setup.config import Config

COST_DIR = ".cost"  # <sweep>/.cost/: cost.json and the settings the probe job measures
PROBE_JOB = "probe"  # <sweep>/.cost/probe/: the probe job's own folder (its log and Hydra files, an error.txt)
COST_FILE = "cost.json"
SETTINGS_FILE = "settings.json"  # what the sweeper asks the probe job to measure
COST_SCHEMA = 1
Seconds = Annotated[float, Field(gt=0)]
# What of trainer.* changes a step's cost: the batch, the optimizer's kind and extra work (weight decay, clipping),
# the precision, the device and its threads, and how the step runs (compiled, captured). Never seed or lr.
COST_TRAINER_KEYS = ("batch_size", "optimizer", "precision", "device", "threads", "compile", "capture")
NOT_COST = {"model": ("init",), "dataset": ("root", "download")}  # what a step computes does not depend on these


def cost_key(config: Config) -> dict[str, Any]:
    """The keys of a configuration that change the cost of its training step (COST_TRAINER_KEYS, the activation and
    its parameters, the model's keys but its init, the dataset's but where its files are)."""
    from harness.setup.config import to_dict

    tree = to_dict(config)
    trainer = {key: tree["trainer"][key] for key in COST_TRAINER_KEYS}
    trainer["weight_decay"] = tree["trainer"]["weight_decay"] > 0
    trainer["grad_clip"] = tree["trainer"]["grad_clip"] is not None
    if tree["trainer"]["optimizer"] == "sgd":
        trainer["momentum"] = tree["trainer"]["momentum"] > 0
    key = {"activation": tree["activation"], "trainer": trainer}
    for section in ("model", "dataset"):
        key[section] = {k: v for k, v in tree[section].items() if k not in NOT_COST[section]}
    return key


def cost_id(config: Config) -> str:
    """A stable name of a configuration's cost setting: equal for two jobs whose steps cost the same."""
    blob = json.dumps(cost_key(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class Memory(BaseModel):
    """A step's memory. Counted on every device: the bytes saved for backward (saved-tensor hooks), the parameters,
    their gradients and the optimizer's state. Measured: on CUDA the allocator's peak during a step
    (`peak_alloc_bytes`); on the CPU the peak resident memory of a fresh process that built the model and took a few
    steps (`peak_rss_bytes`) and that process's resident memory once torch was imported, before the model
    (`import_rss_bytes`). A figure that was not measured is null."""

    model_config = STRICT
    saved_bytes: Count
    param_bytes: Count
    grad_bytes: Count
    optimizer_bytes: Count
    peak_alloc_bytes: Count | None = None
    peak_rss_bytes: Count | None = None
    import_rss_bytes: Count | None = None


class CostSetting(BaseModel):
    """One cost setting as its probe measured it."""

    model_config = STRICT
    cost_id: str  # the hash of the keys that change a step's cost (harness.training.cost.cost_key)
    probe: str  # the probe job that measured it: rounds pair only within one probe
    config: dict  # a representative job's whole configuration (harness.setup.config.to_dict)
    device: str  # the torch device type: cpu, cuda, mps
    device_name: str  # e.g. "NVIDIA H200" or the CPU's model name
    threads: int
    hostname: str
    measured_at: str  # ISO 8601, UTC
    n_params: Count
    steps_per_round: Annotated[int, Field(ge=1)]
    step_s: list[Seconds]  # per round: the mean time of one training step (forward, backward, optimizer)
    forward_s: list[Seconds]  # per round: the mean time of one forward pass (no gradient)
    memory: Memory


class CostFile(BaseModel):
    model_config = STRICT
    schema_version: int = Field(COST_SCHEMA, ge=COST_SCHEMA, le=COST_SCHEMA)
    settings: list[CostSetting]


def cost_file(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / COST_DIR / COST_FILE


def read_cost_file(path: Path) -> list[dict]:
    """The settings of one cost.json, validated; Unreadable with one line otherwise."""
    return list(validated(CostFile, read_record(path))["settings"])


def read_costs(sweep_dir: Path) -> list[dict]:
    """The settings a sweep's probe measured; none when it has no cost.json. Unreadable when it has a bad one."""
    path = cost_file(sweep_dir)
    return read_cost_file(path) if path.exists() else []


def find_cost_files(folder: Path) -> list[Path]:
    """Every cost.json under a folder of runs (a sweep, a study, results/), sorted."""
    return sorted(p for p in Path(folder).rglob(f"{COST_DIR}/{COST_FILE}") if p.is_file())


def add_costs(sweep_dir: Path, settings: list[dict]) -> None:
    """Add measured settings to the sweep's cost.json (a setting measured again replaces its earlier record),
    validated before it is written, atomically."""
    try:
        kept = read_costs(sweep_dir)
    except Unreadable:
        kept = []  # a damaged file is measured again rather than trusted
    new_ids = {s["cost_id"] for s in settings}
    record = {"schema_version": COST_SCHEMA, "settings": [s for s in kept if s["cost_id"] not in new_ids] + settings}
    text = json.dumps(record, indent=1)
    validated(CostFile, text)
    path = cost_file(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text))
