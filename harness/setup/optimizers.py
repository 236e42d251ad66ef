"""The trainer.optimizer registry: torch's optimizer for each name, and how many values it keeps per parameter.

Validation (harness.setup.resolve) and the memory estimate (harness.setup.footprint) read it. The loop steps
harness.training.stacked_optim.StackedOptimizer, which implements each of these names for K members at once and is
tested against the torch optimizer built here (make_optimizer: also the plain reference loop of the benchmarks); a new
optimizer is one entry in each table here and its update there.

Which tensors weight decay applies to is decided here too (decay_flags): every one but the activation modules'
own parameters (PReLU's slope, StarReLU's scale and bias, a learnable activation's coefficients), unless
trainer.activation_decay is true (docs/activations.md, Learnable activations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from harness.networks.models import activation_layers
from harness.setup.config import TrainerConfig

# trainer.optimizer: (parameters, trainer config) -> torch optimizer
OPTIMIZERS: dict[str, Callable[[Iterable[torch.Tensor], TrainerConfig], torch.optim.Optimizer]] = {
    "adam": lambda params, t: torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay),
    "adamw": lambda params, t: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay),
    "sgd": lambda params, t: torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay),
}
# trainer.optimizer: (trainer config) -> values it keeps per parameter (the memory estimate)
OPTIMIZER_STATES: dict[str, Callable[[TrainerConfig], int]] = {
    "adam": lambda t: 2,
    "adamw": lambda t: 2,
    "sgd": lambda t: 1 if t.momentum else 0,
}


def activation_parameter_names(model: torch.nn.Module) -> set[str]:
    """The qualified names (model.named_parameters()'s) of the parameters of every activation module of the model
    (harness.networks.models.activation_layers: each hidden layer's `act`, each RNN direction's)."""
    own = {id(p) for acts in activation_layers(model).values() for act in acts for p in act.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in own}


def decay_flags(model: torch.nn.Module, names: list[str], t: TrainerConfig) -> list[bool]:
    """For each parameter name (in the optimizer's order), whether weight decay applies to it: not to an activation
    module's parameters unless trainer.activation_decay says so (decaying a learnt slope or scale pulls the unit
    towards another function, not towards a smaller network)."""
    exempt = set() if t.activation_decay else activation_parameter_names(model)
    return [name not in exempt for name in names]


def make_optimizer(model: torch.nn.Module, t: TrainerConfig) -> torch.optim.Optimizer:
    """torch's own optimizer for one model, the activation modules' parameters in a second param group at weight
    decay 0 where decay_flags exempts them (the reference the harness's optimizer is tested against)."""
    named = list(model.named_parameters())
    flags = decay_flags(model, [n for n, _ in named], t)
    exempt = [p for (_, p), decays in zip(named, flags) if not decays]
    if not exempt or not t.weight_decay:
        return OPTIMIZERS[t.optimizer](model.parameters(), t)
    optimizer = OPTIMIZERS[t.optimizer]([p for (_, p), decays in zip(named, flags) if decays], t)
    optimizer.add_param_group({"params": exempt, "weight_decay": 0.0})
    return optimizer
