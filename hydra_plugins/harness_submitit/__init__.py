"""submitit launchers for the harness: conf/hydra/launcher/slurm_*.yaml name them as their _target_ (launcher.py
says why the class lives in _launcher.py)."""
