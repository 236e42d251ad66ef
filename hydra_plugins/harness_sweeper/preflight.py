"""Before Hydra writes anything: a command line that cannot work gets one line and exit 2.

Hydra prints several lines (or a traceback) for an unknown config option, a value of the wrong type or an override
it cannot parse, and creates the run folder before the run can refuse it. This composes the same config in process
first, checks it the way harness.run will, and checks the folders it would write to.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf, open_dict, read_write

from harness.common.outputs import SymlinkRefused, refuse_symlinks
from harness.setup.config import Config, DatasetConfig
from hydra_plugins.harness_sweeper._folders import job_outputs
from hydra_plugins.harness_sweeper.harness_sweeper import EXIT_BAD_INPUT, BadSweep, compact
from hydra_plugins.harness_sweeper.preconditions import (
    BadCommand,
    check_folder,
    check_launcher,
    check_launcher_installed,
    check_sweep_has_jobs,
    launcher_memory,
)

VALUE_FLAGS = {"--config-path": "cp", "-cp": "cp", "--config-name": "cn", "-cn": "cn"}
MULTIRUN_FLAGS = {"-m", "--multirun"}
ERROR_LIMIT = 2000  # characters of the one line: a huge value is cut, not printed whole


def split_argv(argv: list[str]) -> tuple[bool, dict[str, str], list[str]] | None:
    """(multirun, value flags, overrides); None for a command that only asks Hydra something (--help, --cfg, ...)."""
    multirun, flags, overrides = False, {}, []
    args = iter(argv)
    for arg in args:
        key, eq, value = arg.partition("=")
        if arg in MULTIRUN_FLAGS:
            multirun = True
        elif key in VALUE_FLAGS:
            flags[VALUE_FLAGS[key]] = value if eq else next(args, "")
        elif arg.startswith("-"):
            return None
        else:
            overrides.append(arg)
    return multirun, flags, overrides


def parse(overrides: list[str]) -> list[Override]:
    """Hydra's parse of each override, with the override it could not parse named."""
    parser = OverridesParser.create()
    parsed: list[Override] = []
    for line in overrides:
        key = line.partition("=")[0].lstrip("+~")
        if "=" in line and not key:
            raise BadCommand(f"malformed override {line!r}: expected key=value")
        try:
            parsed += parser.parse_overrides([line])
        except Exception as exc:
            raise BadCommand(f"cannot parse override {line!r}: {compact(exc)}") from None
    return parsed


def check_run_dir(run_dir: Path, config: Config) -> bool:
    """A single run's folder: not a file, not held by a live process, not a finished run of this or another config.

    True when it holds this configuration's finished run and resume=true keeps it.
    """
    from harness.setup.config import config_hash
    from harness.sweeps.joblock import lock_state, read_lock
    from harness.sweeps.sweep import FINISHED, job_state

    if run_dir.exists() and not run_dir.is_dir():
        raise BadCommand(f"hydra.run.dir={run_dir} is a file, not a folder")
    if lock_state(run_dir) == "running":
        holder = read_lock(run_dir) or {}
        raise BadCommand(f"{run_dir} is in use by pid {holder.get('pid')} on {holder.get('host')} (its job.lock)")
    state, summary = job_state(run_dir)
    if state not in FINISHED:
        return False
    assert summary is not None  # job_state returns a finished state only with its summary
    if summary["config_hash"] != config_hash(config):
        raise BadCommand(
            f"{run_dir} already holds a finished run of another configuration; choose another "
            "hydra.run.dir, or leave it out for a new folder"
        )
    if not config.resume:
        raise BadCommand(
            f"{run_dir} already holds this finished run; add resume=true to keep it and do nothing, "
            "or leave hydra.run.dir out for a new folder"
        )
    return True


def check_command(argv: list[str], script_dir: Path) -> Path | None:
    """Raise BadCommand for a command that cannot work; return the run folder of a finished run to keep (resume)."""
    split = split_argv(argv)
    if split is None:
        return None
    multirun, flags, overrides = split
    parsed = parse(overrides)
    check_launcher_installed(parsed)
    if multirun:  # the sweeper composes and checks every job; here what Hydra itself would trip on
        check_sweep_has_jobs(parsed)
        # parse_overrides sets every override's input_line (Override types it as optional)
        overrides = [o.input_line for o in parsed if not o.is_sweep_override() and o.input_line is not None]
    conf_dir = script_dir / flags.get("cp", "conf")  # Hydra's config_path: relative to the script
    try:
        with initialize_config_dir(config_dir=str(conf_dir.absolute()), version_base="1.3"):
            cfg = compose(config_name=flags.get("cn", "config"), overrides=overrides, return_hydra_config=True)
        hydra = cfg.hydra
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        folder = check_folder(key, str(hydra.sweep.dir if multirun else hydra.run.dir))
        set_launcher_memory(launcher_memory(hydra.launcher) if multirun else None)
        if multirun:  # values still missing may come from the swept ones
            check_launcher(hydra)
            return None
        refuse_symlinks(folder, job_outputs(cfg))  # the sweeper checks each job's folder likewise
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        # The structured schema (Config, registered by run.py as base_config) makes the object a Config.
        config = cast(Config, OmegaConf.to_object(cfg))
    except BadCommand:
        raise
    except SymlinkRefused as exc:
        raise BadCommand(str(exc)) from None
    except Exception as exc:
        raise BadCommand(compact(exc)) from None
    check_config(config)
    check_trackers(config)
    kept = check_run_dir(folder, config)
    fetch_data(config.dataset)
    return folder if kept else None


def set_launcher_memory(request: tuple[int, str] | None) -> None:
    from harness.setup.footprint import set_launcher_memory as set_memory  # torch loads here, not at import time

    set_memory(request)


def check_config(config: Config) -> None:
    """The checks harness.run makes before it loads data (harness.setup.resolve), the device included (a single run
    trains here), each failure in one line."""
    from harness.setup.config import ConfigError
    from harness.setup.resolve import resolve

    try:
        resolve(config)
    except (ConfigError, BadSweep) as exc:
        raise BadCommand(str(exc)) from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a custom target probed here that raises anything, sys.exit included
        raise BadCommand(f"the activation could not be built: {type(exc).__name__}: {compact(exc)}") from None


def check_trackers(config: Config) -> None:
    """logger=: each tracker installed and, for an MLflow server, answering (harness.trackers.live.check)."""
    from harness.trackers.live import TrackerError, check

    try:
        check(config.logger)
    except TrackerError as exc:
        raise BadCommand(str(exc)) from None


def fetch_data(dataset: DatasetConfig) -> None:
    """dataset.download=true with files missing: download them now, before Hydra makes the run folder, so that a
    failed download (no network) is one line with nothing written."""
    from harness.setup.config import DataError
    from harness.setup.data import fetch_torchvision
    from harness.setup.datafiles import check_files, data_files

    root = Path(dataset.root)
    if not dataset.download or all(f.exists() for f in data_files(dataset.name, root)):
        return
    try:
        fetch_torchvision(dataset.name, root)
        check_files(dataset.name, dataset.root, download=False)
    except DataError as exc:
        raise BadCommand(str(exc)) from None
    print(f"downloaded {dataset.name} into {root}")


def preflight(argv: list[str], script_dir: Path) -> None:
    """Exit 2 with one line for a command that cannot work; exit 0 for a finished run kept by resume=true."""
    try:
        kept = check_command(argv, script_dir)
    except BadCommand as exc:
        from harness.common.text import clean

        print(f"error: {clean(exc, ERROR_LIMIT)}", file=sys.stderr)  # one line, whatever the values held
        sys.exit(EXIT_BAD_INPUT)
    if kept is not None:
        print(f"{kept} already holds this finished run (resume=true): nothing to do")
        sys.exit(0)
