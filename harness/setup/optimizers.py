"""The trainer.optimizer registry: torch's optimizer for each name, and how many values it keeps per parameter.

Validation (harness.setup.resolve) and the memory estimate (harness.setup.footprint) read it. The loop steps
harness.training.stacked_optim.StackedOptimizer, which implements each of these names for K members at once and is
tested against the torch optimizer built here (make_optimizer: also the plain reference loop of the benchmarks); a new
optimizer is one entry in each table here and its update there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

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


def make_optimizer(model: torch.nn.Module, t: TrainerConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[t.optimizer](model.parameters(), t)
