"""submitit launchers for the harness: conf/hydra/launcher/slurm_*.yaml name them as their _target_."""
