"""Registers the SLURM launcher with Hydra, where the launchers extra is installed.

Hydra instantiates only the launcher classes its plugin scanner found, and the scanner imports every module under
hydra_plugins/ whose name does not start with "_". The class lives in _launcher.py, which imports
hydra-submitit-launcher; importing it here only when that package is present keeps a run without the extra free
of Hydra's "plugin is incompatible or buggy" warning (preflight refuses the SLURM presets then, in one line).
"""

import importlib.util

if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from hydra_plugins.harness_submitit._launcher import SubmititSlurmLauncher  # noqa: F401
