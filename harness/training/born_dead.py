"""Born-dead probe: over many fresh initialisations, how often is some hidden layer dead for every probe input?

A network whose hidden layer has every unit dead (|f'(z)| <= 1e-8, the probes' definition) for every input of
the probe set passes nothing that depends on the input beyond it: on that set it is a constant function, "born
dead" in the sense of Lu et al. (2019), "Dying ReLU and Initialization: Theory and Numerical Examples". This
module measures the fraction of born-dead initialisations inside one job (`trainer.init_trials=N` with
`trainer.steps=0`), so that hundreds of initialisations per configuration take seconds, not hundreds of jobs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.networks import probes
from harness.networks.activations import ActivationSpec
from harness.networks.models import Cell, initialise

SEED_STRIDE = 100_000  # trial i of run seed s initialises with seed s * SEED_STRIDE + i: disjoint across run seeds


def trial_seed(seed: int, trial: int) -> int:
    """The torch seed of one initialisation trial."""
    return seed * SEED_STRIDE + trial


def reinitialise(model: nn.Module, scheme: str, gain: float) -> None:
    """Draw fresh parameters in place, as building the model anew would (module order, then model.init)."""
    for module in model.modules():
        if isinstance(module, Cell):  # the recurrent cells' own init: uniform in +-1/sqrt(hidden)
            bound = 1 / math.sqrt(module.hidden_size)
            for p in module.parameters(recurse=False):
                nn.init.uniform_(p, -bound, bound)
        elif (reset_parameters := getattr(module, "reset_parameters", None)) is not None:
            reset_parameters()
    initialise(model, scheme, gain)


def first_dead_layer(stats: dict[str, probes.LayerStats]) -> str | None:
    """The shallowest hidden layer whose every unit is dead on the probe set, or None."""
    for name, s in stats.items():  # models list hidden layers in order of depth
        if s.units and s.dead == s.units:
            return name
    return None


def born_dead_trials(
    model: nn.Module, act: ActivationSpec, scheme: str, probe_x: torch.Tensor, trials: int, seed: int
) -> dict:
    """Initialise `model` afresh `trials` times (model.init `scheme`); the born-dead fraction, its standard error
    and details. Re-initialising one model in place: construction costs more than probing."""
    born_dead = 0
    first: dict[str, int] = {}
    dead_fraction_sum = 0.0
    rng_state = torch.get_rng_state()
    try:
        for i in range(trials):
            torch.manual_seed(trial_seed(seed, i))
            reinitialise(model, scheme, act.gain)
            stats = probes.probe_units(model, probe_x, act.max_slope)  # dead: the probes' own definition
            dead_fraction_sum += sum(s.dead for s in stats.values()) / max(sum(s.units for s in stats.values()), 1)
            layer = first_dead_layer(stats)
            if layer is not None:
                born_dead += 1
                first[layer] = first.get(layer, 0) + 1
    finally:
        torch.set_rng_state(rng_state)  # the caller's random stream is left as it was
    p = born_dead / trials
    return {
        "init_trials": trials,
        "born_dead_count": born_dead,
        "born_dead_fraction": p,
        "born_dead_se": math.sqrt(p * (1 - p) / trials),  # binomial standard error
        "born_dead_first_layer": dict(sorted(first.items(), key=lambda kv: _depth(kv[0]))),
        "init_dead_fraction_mean": dead_fraction_sum / trials,  # units dead at init, mean over trials
        "init_trial_seeds": [trial_seed(seed, 0), trial_seed(seed, trials - 1)],  # first and last
    }


def _depth(layer: str) -> int:
    return int(layer.rsplit(".", 1)[-1]) if layer[-1].isdigit() else 1 << 30
