"""The unit probe (harness.networks.probes.probe_units) for every member of a stacked model at once: one stacked forward
over the probe set per chunk, each activation layer's pre-activations and outputs watched with the member axis
kept, so that a boundary's probe costs a few stacked calls whatever the number of members.

Each member gets what its own probe_units gives: per unit the largest |f'(z)| over every probe sample (dead,
saturated; for a gated unit what it passes back and its gate's slope), and its outputs' mean and std, with the
same definitions (docs/activations.md). A group of one (OneModel) is probed by probe_units itself.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from harness.networks import stacked_layers
from harness.networks.gated import expansion, gate_max_slope, gated_slopes, is_gated, saturation_defined
from harness.networks.models import activation_layers
from harness.networks.probes import DEAD_TOL, SATURATION_RATIO, LayerStats, probe_units
from harness.networks.sparsity import OutputSparsity, layer_fractions, members_cett_sparsity, next_weights
from harness.networks.unit_slopes import stacked_unit_derivative, unit_max_slope

if TYPE_CHECKING:
    from harness.networks.stacked import StackedModel

# probe samples per stacked forward: bounds the memory at K x 256 rows, and is the same for every K, so that a
# member's sums (and so its mean and std, bit for bit in float32) do not depend on its group's size
PROBE_CHUNK = 256


def stacked_slope(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    """f'(z) elementwise for the members' activation on a stacked z (harness.networks.activations.derivative's
    rules)."""
    if isinstance(act, nn.Softmax):  # the diagonal of its Jacobian over one member's units
        s = z.float().softmax(cdim)
        return s * (1 - s)
    diagonal = stacked_unit_derivative(act, z, kdim, cdim)  # PolyNorm's, over one member's units
    if diagonal is not None:
        return diagonal
    with torch.enable_grad():
        z = z.detach().to(torch.float64 if z.dtype == torch.float64 else torch.float32).requires_grad_(True)
        (grad,) = torch.autograd.grad(stacked_layers.apply_activation(z, act, kdim, cdim).sum(), z)
    return grad


def unit_peaks(values: torch.Tensor, kdim: int, cdim: int) -> torch.Tensor:
    """The largest value of each member's units over every other axis: -> (K, units). One axis at a time, in
    place (no transposed copy; amax over several axes at once is far slower, as probes.per_unit_peak says)."""
    for axis in sorted(set(range(values.dim())) - {kdim, cdim}, reverse=True):
        values = values.amax(axis)
    return values if kdim < cdim else values.T


def keep_max(old: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
    return new if old is None else torch.maximum(old, new)


Threshold = float | torch.Tensor  # one number, or one per unit (a per-unit activation's: the spline)


class StackedWatch:
    """One activation module of the shadow tree over every call of a probe: the members' unit peaks and sums."""

    peak: torch.Tensor | None  # (K, units), once the module has run
    gate_peak: torch.Tensor | None
    sum: torch.Tensor | float  # (K,) of the outputs, once the module has run
    sumsq: torch.Tensor | float

    def __init__(self, act: nn.Module, thresholds: list[Threshold] | None, keep: bool = False) -> None:
        self.act, self.gated = act, is_gated(act)
        self.thresholds = thresholds  # per member: SATURATION_RATIO x its max|f'|; None: saturation undefined
        self.peak = self.gate_peak = None
        self.sum = self.sumsq = 0.0
        self.count = 0
        self.sparsity = OutputSparsity(keep)  # keep: its outputs feed one Linear (the CETT)

    def __call__(self, z: torch.Tensor, out: torch.Tensor, kdim: int, cdim: int) -> None:
        act = self.act
        if is_gated(act):  # self.gated, with act narrowed
            to_value, to_gate, gate_slope = (s.nan_to_num(nan=-1.0) for s in gated_slopes(act, z, cdim))
            self.peak = keep_max(self.peak, unit_peaks(torch.maximum(to_value, to_gate), kdim, cdim))
            self.gate_peak = keep_max(self.gate_peak, unit_peaks(gate_slope, kdim, cdim))
        else:  # NaN: neither alive nor unsaturated, as in probe_units
            slope = stacked_slope(z, self.act, kdim, cdim).abs_().nan_to_num_(nan=-1.0)
            self.peak = keep_max(self.peak, unit_peaks(slope, kdim, cdim))
        members = out.detach().movedim(kdim, 0)  # (K, B, units, ...)
        self.sparsity.add(members)
        members = members.reshape(members.shape[0], -1)  # each member's outputs in its own model's order
        members = members if members.dtype == torch.float64 else members.float()
        self.sum = self.sum + members.sum(1)
        self.sumsq = self.sumsq + (members * members).sum(1)
        self.count += members.shape[1]

    def alive(self) -> torch.Tensor:
        assert self.peak is not None, "the watched module never ran"
        return self.peak > DEAD_TOL

    def unsaturated(self) -> torch.Tensor:
        """Which units of each member reach its threshold; only where saturation is defined (thresholds)."""
        slope = self.gate_peak if self.gated else self.peak
        assert slope is not None and self.thresholds is not None
        per_member = [torch.as_tensor(t, dtype=slope.dtype, device=slope.device) for t in self.thresholds]
        return slope >= torch.stack([t.expand(slope.shape[1]) for t in per_member])


def thresholds(members: list[nn.Module], name: str, j: int, max_slopes: list[float | None]) -> list[Threshold] | None:
    """SATURATION_RATIO x max|f'| of activation module j of layer `name`, per member (None where saturation is
    undefined): the fixed max|f'| where given, else from the member's own module's current parameters (per unit
    for a per-unit activation, as probe_units)."""
    acts = [activation_layers(m)[name][j] for m in members]
    if expansion(acts[0]) != 2 and not saturation_defined(acts[0]):
        return None
    slopes = [
        ms if ms is not None else gate_max_slope(a) if is_gated(a) else unit_max_slope(a)
        for a, ms in zip(acts, max_slopes)
    ]
    return [SATURATION_RATIO * s for s in slopes]


@torch.no_grad()
def probe_members(stack: StackedModel, x: torch.Tensor, max_slopes: list[float | None]) -> list[dict[str, LayerStats]]:
    """probe_units for every member of a stack (harness.networks.stacked.StackedModel) on inputs x, in eval mode;
    max_slopes: each member's activation's max|f'| where fixed, as for probe_units."""
    if not stack.member_axis:
        return [probe_units(stack.shadow, x, max_slopes[0])]
    following = next_weights(stack.shadow)  # the stacked (K, out, units) weights
    watches = {
        name: [
            StackedWatch(a, thresholds(stack.members, name, j, max_slopes), following[name] is not None)
            for j, a in enumerate(acts)
        ]
        for name, acts in activation_layers(stack.shadow).items()
    }
    shadow_acts = [a for acts in activation_layers(stack.shadow).values() for a in acts]
    for act, watch in zip(shadow_acts, [w for ws in watches.values() for w in ws]):
        act.stacked_watch = watch  # type: ignore[assignment]  # torch's stub takes a Tensor or Module; any value is set
    was_training = stack.training
    stack.eval()
    try:
        for i in range(0, len(x), PROBE_CHUNK):
            chunk = x[i : i + PROBE_CHUNK]
            stack.forward(chunk.expand(stack.k, *chunk.shape))
    finally:
        stack.train(was_training)
        for act in shadow_acts:
            del act.stacked_watch
    return member_stats(watches, stack.k, following)


def member_stats(
    watches: dict[str, list[StackedWatch]], k: int, following: dict[str, torch.Tensor | None]
) -> list[dict[str, LayerStats]]:
    """Each member's LayerStats from the watches, with one read of the device for every member and layer;
    following: the (K, out, units) weight each layer's outputs feed, for the CETT (sparsity.next_weights)."""
    masks: dict[str, tuple[torch.Tensor, bool]] = {}
    columns = []
    for name, ws in watches.items():
        alive = torch.cat([w.alive() for w in ws], dim=1)  # (K, units)
        defined = all(w.thresholds is not None for w in ws)
        unsaturated = torch.cat([w.unsaturated() for w in ws], dim=1) if defined else alive
        total, total_sq, n = sum(w.sum for w in ws), sum(w.sumsq for w in ws), sum(w.count for w in ws)
        assert isinstance(total, torch.Tensor) and isinstance(total_sq, torch.Tensor), "a watched module never ran"
        mean = total / n
        var = (total_sq / n - mean**2).clamp_min(0) * n / max(n - 1, 1)
        masks[name] = alive, defined
        zero, small = layer_fractions([w.sparsity for w in ws])
        weight = following[name]
        cett = members_cett_sparsity(ws[0].sparsity.outputs(), weight) if weight is not None else zero * math.nan
        counts = [(~alive).sum(1), (~unsaturated).sum(1)]
        columns.append(torch.stack([c.double() for c in (*counts, mean, var.sqrt(), zero, small, cett)], dim=1))
    table = torch.stack(columns, dim=1).tolist()  # (K, layers, 7)
    return [
        {
            name: LayerStats(
                units=alive.shape[1],
                dead=int(row[0]),
                saturated=int(row[1]) if defined else None,
                mean=row[2],
                std=row[3],
                alive=alive[i],
                zero_fraction=row[4],
                small_fraction=row[5],
                cett_sparsity=None if following[name] is None else row[6],
            )
            for (name, (alive, defined)), row in zip(masks.items(), table[i])
        }
        for i in range(k)
    ]
