"""submitit launchers for the harness: conf/hydra/launcher/slurm_*.yaml name them as their _target_.

The module is `_launcher`: Hydra's plugin scanner imports every module under hydra_plugins/ except those whose
name starts with "_", and this one imports the launchers extra (hydra-submitit-launcher). Named without the
underscore, every run without that extra would print Hydra's "plugin is incompatible or buggy" warning. It is not
a plugin Hydra needs to discover: Hydra instantiates it from the presets' _target_.
"""
