"""Summary keys of a run's course: dead at init vs lost in training, gradient flow, and drawdown.

Definitions (docs/flow.md): a unit is *lost* when it was alive at the step-0 probe and is dead at the final one,
from the per-unit masks of both probes (not a difference of fractions: a unit revived and another killed cancel
in a difference). The *gradient-flow ratio* is the head's weight-gradient norm over the first hidden layer's.
The *drawdown* is the worst fall of validation accuracy below its running best, over the run's evaluations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the report reads drawdown from here without loading torch
    import torch

HEAD, FIRST = "head", "hidden.0"


def dead_fractions(alive: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per layer, the fraction of units that are dead in a probe's alive mask."""
    return {layer: (~mask).sum().item() / mask.numel() for layer, mask in alive.items()}


def lost_fractions(alive_init: dict[str, torch.Tensor], alive_end: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per layer, the fraction of its units alive at init AND dead at the end ({} without both masks)."""
    return {
        layer: (mask & ~alive_end[layer].cpu()).sum().item() / mask.numel()
        for layer, mask in alive_init.items()
        if layer in alive_end
    }


def grad_flow_ratio(norms: dict[str, float]) -> float | None:
    """Head over first hidden layer weight-gradient norm; None for a model without hidden layers (depth 0), or
    when either norm is missing or the first layer's is 0 (the ratio is undefined, not infinite)."""
    head, first = norms.get(HEAD), norms.get(FIRST)
    if head is None or not first:
        return None
    return head / first


def drawdown(values: list[float]) -> float | None:
    """The worst fall of a series below its running best (0 if it never falls; None for an empty series)."""
    worst, best = None, float("-inf")
    for v in values:
        best = max(best, v)
        worst = max(worst or 0.0, best - v)
    return worst


def val_accuracies(rows: list[tuple]) -> list[float]:
    """The whole-network validation accuracies among metrics rows, in the order recorded (step order)."""
    return [value for _, split, metric, layer, value, _ in rows if split == "val" and metric == "acc" and layer is None]
