"""Activation sparsity of each activation layer over the probe set (docs/activations.md, "Sparsity").

Three numbers per layer, from the activation layer's outputs h (a gated unit's h is its output v(u) f(g)):

- zero_fraction: the fraction of outputs exactly 0 (every sample, unit, position and time step).
- small_fraction: the fraction with |h| <= RELATIVE_TOL x the RMS of that layer's outputs on the same sample (its
  units and positions; in an RNN, that time step; in the transformer, that token), so that it does not depend on
  the layer's scale. Defined in every family; the measure for the CNN and the RNN.
- cett_sparsity (the MLP and the transformer FFN, whose output feeds one Linear): the CETT-based sparsity of
  "ReLU^2 Wins" (Zhang et al. 2024). Neuron i's contribution to the next Linear's output y = W h on a sample is
  h_i W[:, i], of norm |h_i| ||W[:, i]||; dropping the contributions at or below eps leaves the error
  CETT(eps) = ||sum of the dropped contributions|| / ||y||, averaged over the samples (tokens). eps is one threshold
  per layer over the whole probe set, found by bisection over the sorted contribution norms (as the paper's
  group's reference code does), with CETT(eps) <= CETT_BOUND and CETT above it at the next norm; the sparsity is
  the fraction of (sample, neuron) contributions at or below eps.

Every function works on outputs with the members first, (K, B, units, ...): the unit probe passes (1, ...), the
stacked probe (harness.networks.stacked_probes) K members at once, and each member gets what its own probe gives.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.networks.models import MLP, Dense, Transformer, hidden_layers

CETT_BOUND = 0.2  # the paper's: the dropped contributions may change the layer's output by at most 20% (in norm)
RELATIVE_TOL = 1e-2  # |h| at or below 1% of its layer's RMS output on that sample counts as (near) zero
CETT_ELEMENTS = 1 << 24  # contributions per bisection batch of members: bounds the probe's extra memory


def next_weights(model: nn.Module) -> dict[str, torch.Tensor | None]:
    """Per activation layer, the weight (out, units) of the Linear its outputs feed, or None where the outputs feed
    no single Linear (CNN, RNN): the MLP's next hidden Linear or its head, the transformer block's FFN output. On a
    stacked shadow tree the weights are the stacked (K, out, units) ones."""
    layers = hidden_layers(model)
    names = [f"hidden.{i}" for i in range(len(layers))]
    if isinstance(model, MLP):
        following = [b.linear.weight for b in layers[1:] if isinstance(b, Dense)] + [model.head.weight]
        return dict(zip(names, following))
    if isinstance(model, Transformer):
        return {name: block.get_parameter("ffn_out.weight") for name, block in zip(names, layers)}
    return dict.fromkeys(names)


class OutputSparsity:
    """What one activation module's outputs add to its layer's sparsity, over every call of a probe, per member."""

    zeros: torch.Tensor | float  # (K,) once a call was seen
    small: torch.Tensor | float

    def __init__(self, keep: bool) -> None:
        self.keep = keep  # keep the outputs (K, rows, units) for the CETT: layers that feed one Linear
        self.kept: list[torch.Tensor] = []
        self.zeros = self.small = 0.0
        self.count = 0  # outputs per member

    def add(self, out: torch.Tensor) -> None:
        """out (K, B, units, ...): the members' outputs of one call."""
        out = out.detach()
        out = out if out.dtype == torch.float64 else out.float()
        flat = out.flatten(2)  # (K, B, units x positions)
        rms = flat.square().mean(2, keepdim=True).sqrt()
        self.zeros = self.zeros + (flat == 0).sum((1, 2))
        self.small = self.small + (flat.abs() <= RELATIVE_TOL * rms).sum((1, 2))
        self.count += flat[0].numel()
        if self.keep:
            assert out.dim() == 3, "only layers of (rows, units) outputs feed one Linear"
            self.kept.append(out)

    def outputs(self) -> torch.Tensor:
        """(K, rows, units): every kept call's outputs, in the order of the probe's samples."""
        return torch.cat(self.kept, dim=1)


def layer_fractions(parts: list[OutputSparsity]) -> tuple[torch.Tensor, torch.Tensor]:
    """(zero_fraction, small_fraction) of one layer (its modules' outputs together), each (K,)."""
    count = sum(p.count for p in parts)
    zeros, small = sum(p.zeros for p in parts), sum(p.small for p in parts)
    assert isinstance(zeros, torch.Tensor) and isinstance(small, torch.Tensor), "a watched module never ran"
    return zeros.double() / count, small.double() / count


def cett(h: torch.Tensor, w: torch.Tensor, norms: torch.Tensor, full: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ||sum of the contributions with norm <= eps|| / ||W h||, per member: (K,)."""
    dropped = h * (norms <= eps[:, None, None])  # 3x faster than torch.where on a CPU
    return (torch.bmm(dropped, w.transpose(1, 2)).norm(dim=2) / full).mean(1)


def cett_sparsity(h: torch.Tensor, w: torch.Tensor, bound: float = CETT_BOUND) -> tuple[torch.Tensor, torch.Tensor]:
    """(sparsity, eps), each (K,), of outputs h (K, rows, units) that feed weights w (K, out, units).

    Bisection over each member's sorted contribution norms, with 0 (which drops only exact zeros: CETT 0) as the
    first candidate: the eps it ends on has CETT(eps) <= bound and CETT above bound at the next norm up (CETT
    grows with eps but not strictly monotonically: dropped contributions can cancel; the bisection finds a
    crossing, the first one wherever CETT is monotone). Each step is one matrix product of the probe set's size
    (a table of every row's prefix sums, made once, was several times slower on a CPU). No host synchronisation:
    a fixed number of steps."""
    h, w = h.to(w.dtype), w.detach()
    norms = h.abs() * w.norm(dim=1)[:, None, :]  # (K, rows, units): |h_i| ||W[:, i]||
    # a row whose output is exactly 0 (a dead layer) tolerates no dropped contribution that is not 0 itself
    full = torch.bmm(h, w.transpose(1, 2)).norm(dim=2).clamp_min(torch.finfo(h.dtype).tiny)
    candidates = torch.cat([norms.new_zeros(len(h), 1), norms.flatten(1).sort(dim=1).values], dim=1)
    lo = torch.zeros(len(h), dtype=torch.long, device=h.device)  # candidate 0 always holds
    hi = torch.full_like(lo, candidates.shape[1] - 1)
    for _ in range(max(candidates.shape[1] - 1, 1).bit_length()):
        mid = (lo + hi + 1) // 2
        holds = cett(h, w, norms, full, candidates.gather(1, mid[:, None])[:, 0]) <= bound
        lo, hi = torch.where(holds, mid, lo), torch.where(holds, hi, mid - 1)
    eps = candidates.gather(1, lo[:, None])[:, 0]
    return (norms <= eps[:, None, None]).flatten(1).double().mean(1), eps


def members_cett_sparsity(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """cett_sparsity's sparsity for K members, a few members at a time (CETT_ELEMENTS contributions a batch)."""
    per_batch = max(1, CETT_ELEMENTS // max(h[0].numel(), 1))
    return torch.cat(
        [cett_sparsity(h[i : i + per_batch], w[i : i + per_batch])[0] for i in range(0, len(h), per_batch)]
    )
