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

from harness import probes
from harness.activations import activation_factory, derivative
from harness.config import Config, activation_params
from harness.models import Cell, activation_layers, build_model, init_gain, initialise

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
        elif hasattr(module, "reset_parameters"):
            module.reset_parameters()
    initialise(model, scheme, gain)


@torch.no_grad()
def dead_units(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, int]]:
    """(dead units, units) of each hidden layer on inputs x, in eval mode: the probes' definition of dead."""
    alive: dict[int, torch.Tensor] = {}  # id(activation module) -> (units,) bool, ORed over every call

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        (z,) = inputs  # (B, units, ...) pre-activation; an RNN cell calls it once per time step
        slope = derivative(module, z).abs()
        seen = (slope > probes.DEAD_TOL).amax(dim=[d for d in range(slope.dim()) if d != 1])
        alive[id(module)] = seen if id(module) not in alive else alive[id(module)] | seen

    layers = activation_layers(model)
    handles = [a.register_forward_hook(hook) for acts in layers.values() for a in acts]
    model.eval()
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    counts = {}
    for name, acts in layers.items():
        units = torch.cat([alive[id(a)] for a in acts])
        counts[name] = (int((~units).sum()), units.numel())
    return counts


def first_dead_layer(counts: dict[str, tuple[int, int]]) -> str | None:
    """The shallowest hidden layer whose every unit is dead on the probe set, or None."""
    for name, (dead, units) in counts.items():  # models list hidden layers in order of depth
        if units and dead == units:
            return name
    return None


def born_dead_trials(config: Config, input_shape: tuple[int, ...], num_classes: int, probe_x: torch.Tensor,
                     trials: int, seed: int) -> dict:
    """Initialise the configured model `trials` times; the born-dead fraction, its standard error and details."""
    name, params = activation_params(config)
    factory = activation_factory(name, **params)
    gain = init_gain(name, params)
    born_dead = 0
    first: dict[str, int] = {}
    dead_fraction_sum = 0.0
    rng_state = torch.get_rng_state()
    model = build_model(config.model, factory, input_shape, num_classes, gain).to(probe_x.device)
    try:
        for i in range(trials):
            torch.manual_seed(trial_seed(seed, i))
            reinitialise(model, config.model.init, gain)  # building once: construction costs more than probing
            counts = dead_units(model, probe_x)
            dead_fraction_sum += sum(d for d, _ in counts.values()) / max(sum(u for _, u in counts.values()), 1)
            layer = first_dead_layer(counts)
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
