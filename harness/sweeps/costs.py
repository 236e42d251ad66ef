"""The sweep's side of the cost probe (harness.training.cost): which cost settings its jobs have, which of them its
cost.json already holds (a resumed sweep measures only the new ones), and the list the probe job reads.

Hydra's plugin scanner may import this module: it imports nothing heavy (no torch).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.records.cost import COST_DIR, SETTINGS_FILE, cost_id, read_costs
from harness.records.results import atomic_write
from harness.records.schema import Unreadable
from harness.setup.config import to_dict

if TYPE_CHECKING:
    from harness.setup.config import Config


def settings_of(configs: Iterable[Config]) -> dict[str, dict]:
    """Each distinct cost setting of the jobs: its first job's configuration and the steps all its jobs train."""
    settings: dict[str, dict] = {}
    for config in configs:
        key = cost_id(config)
        entry = settings.setdefault(key, {"cost_id": key, "config": to_dict(config), "sweep_steps": 0})
        entry["sweep_steps"] += config.trainer.steps
    return settings


def plan_probe(sweep_dir: Path, configs: Iterable[Config]) -> tuple[list[dict], int]:
    """(the settings the probe job must measure, the number measured earlier and reused); the list is written to
    <sweep>/.cost/settings.json for the probe job when it is not empty."""
    settings = settings_of(configs)
    measured = measured_ids(sweep_dir)
    todo = [entry for key, entry in settings.items() if key not in measured]
    if todo:
        folder = Path(sweep_dir) / COST_DIR
        folder.mkdir(parents=True, exist_ok=True)
        listed = {"probe": secrets.token_hex(4), "settings": todo}
        atomic_write(folder / SETTINGS_FILE, lambda f: f.write(json.dumps(listed, indent=1)))
    return todo, len(settings) - len(todo)


def missing(sweep_dir: Path, todo: list[dict]) -> list[str]:
    """The settings of `todo` that the sweep's cost.json still lacks once the probe job has run."""
    measured = measured_ids(sweep_dir)
    return [entry["cost_id"] for entry in todo if entry["cost_id"] not in measured]


def measured_ids(sweep_dir: Path) -> set[str]:
    """The settings the sweep's cost.json holds; none when it is damaged (they are measured again, and
    harness.records.cost.add_costs replaces the file)."""
    try:
        return {s["cost_id"] for s in read_costs(sweep_dir)}
    except Unreadable:
        return set()
