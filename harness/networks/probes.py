"""Probes: dead and saturated units, activation statistics, and gradient norms per layer (and through time)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.networks.gated import (
    GatedActivation,
    gate_max_slope,
    gated_unit_peaks,
    is_gated,
    per_unit_peak,
    saturation_defined,
)
from harness.networks.models import Recurrent, activation_layers, hidden_layers, layer_weights
from harness.networks.sparsity import OutputSparsity, layer_fractions, members_cett_sparsity, next_weights
from harness.networks.unit_slopes import unit_derivative, unit_max_slope

DEAD_TOL = 1e-8  # |f'(z)| at or below this for every probe sample: the unit is dead
SATURATION_RATIO = 0.005  # |f'(z)| below this fraction of max|f'| for every sample: the unit is saturated
PROBE_SIZE = 1024


@dataclass
class LayerStats:
    """Unit and output statistics of one activation layer over the probe set."""

    units: int
    dead: int
    saturated: int | None  # None where saturation is not defined (an unbounded f': relu_squared, star_relu)
    mean: float
    std: float
    alive: torch.Tensor | None = None  # (units,) bool, on the model's device: which units are alive
    # activation sparsity (harness.networks.sparsity): outputs exactly 0, outputs near 0 relative to their
    # sample's RMS, and the CETT-based sparsity (None where the outputs feed no single Linear: CNN, RNN)
    zero_fraction: float | None = None
    small_fraction: float | None = None
    cett_sparsity: float | None = None

    @property
    def dead_fraction(self) -> float:
        return self.dead / self.units

    @property
    def saturated_fraction(self) -> float | None:
        return None if self.saturated is None else self.saturated / self.units


class _UnitWatch:
    """Forward hook on one activation module: the largest |f'(z)| each unit reaches over every call.

    A unit is alive if that peak exceeds DEAD_TOL and unsaturated if it reaches the saturation threshold, which
    is the same as 'some sample does', in one reduction instead of two comparisons and two reductions.
    """

    max_slope: float | torch.Tensor | None  # per unit ((units,)) for a per-unit activation (the spline)
    peak: torch.Tensor | None  # (units,), once the module has run
    sum: torch.Tensor | float  # of the outputs: a tensor once the module has run
    sumsq: torch.Tensor | float
    count: float

    def __init__(self, act: nn.Module, max_slope: float | None) -> None:
        if not saturation_defined(act):  # relu_squared, star_relu, xielu, polyrelu; polynorm (docs/activations.md)
            self.max_slope = None
        else:
            self.max_slope = unit_max_slope(act) if max_slope is None else max_slope
        self.peak = None
        self.sum = self.sumsq = self.count = 0.0
        self.sparsity = OutputSparsity(keep=False)

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        (z,) = inputs  # (B, units, ...) pre-activation
        slope = unit_derivative(module, z).abs_().nan_to_num_(nan=-1.0)  # NaN: neither alive nor unsaturated
        # (units,): the batch axis first, a fast outer reduction (amax over several axes at once is ~40x slower)
        self.keep(per_unit_peak(slope))
        self.add_output(output)

    def keep(self, peak: torch.Tensor) -> None:
        self.peak = peak if self.peak is None else torch.maximum(self.peak, peak)

    def add_output(self, output: torch.Tensor) -> None:
        out = output.detach()
        self.sparsity.add(out[None])  # one member
        out = (out if out.dtype == torch.float64 else out.float()).flatten()  # float64 runs sum in float64
        self.sum = self.sum + out.sum()
        self.sumsq = self.sumsq + torch.dot(out, out)  # one pass, no squared copy
        self.count += out.numel()

    def peak_so_far(self) -> torch.Tensor:
        """The peak over every call so far (a probe reads it after the forward pass, which calls every module)."""
        assert self.peak is not None, "the watched module never ran"
        return self.peak

    def alive(self) -> torch.Tensor:
        return self.peak_so_far() > DEAD_TOL

    def unsaturated(self) -> torch.Tensor | None:
        return None if self.max_slope is None else self.peak_so_far() >= SATURATION_RATIO * self.max_slope


class _GatedUnitWatch(_UnitWatch):
    """The same for a gated unit y = u * f(g) (docs/activations.md): alive while it passes gradient to its value or
    its gate input, max(|f(g)|, |u f'(g)|) > DEAD_TOL, on some sample; unsaturated while its gate's slope |f'(g)|
    reaches SATURATION_RATIO x the gate's max|f'| on some sample."""

    max_slope: float  # the gate's: always defined
    gate_peak: torch.Tensor | None

    def __init__(self, act: GatedActivation, max_slope: float | None) -> None:
        self.max_slope = gate_max_slope(act) if max_slope is None else max_slope
        self.peak = self.gate_peak = None
        self.sum = self.sumsq = self.count = 0.0
        self.sparsity = OutputSparsity(keep=False)

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        (x,) = inputs  # (B, 2 units, ...): the halves [u, g]
        assert is_gated(module)  # the module unit_watch made this watch for
        grad_peak, slope_peak = gated_unit_peaks(module, x)
        self.keep(grad_peak)
        self.gate_peak = slope_peak if self.gate_peak is None else torch.maximum(self.gate_peak, slope_peak)
        self.add_output(output)

    def unsaturated(self) -> torch.Tensor:
        assert self.gate_peak is not None, "the watched module never ran"
        return self.gate_peak >= SATURATION_RATIO * self.max_slope


def unit_watch(act: nn.Module, max_slope: float | None, keep: bool = False) -> _UnitWatch:
    """The watch for one activation module; max_slope as for probe_units (a gated unit's: its gate's); keep: keep
    its outputs for the CETT (a layer whose outputs feed one Linear)."""
    watch = _GatedUnitWatch(act, max_slope) if is_gated(act) else _UnitWatch(act, max_slope)
    watch.sparsity = OutputSparsity(keep)
    return watch


@torch.no_grad()
def probe_units(model: nn.Module, x: torch.Tensor, max_slope: float | None = None) -> dict[str, LayerStats]:
    """Dead/saturated units and output mean/std of every activation layer, in eval mode, on inputs x.

    max_slope: the activation's max|f'| where it is fixed (ActivationSpec.max_slope, computed once per run);
    None computes it from each module's current parameters (PReLU's learned slope).
    """
    watches: dict[str, list[_UnitWatch]] = {}
    handles = []
    following = next_weights(model)
    for name, acts in activation_layers(model).items():
        watches[name] = [unit_watch(a, max_slope, following[name] is not None) for a in acts]
        handles += [a.register_forward_hook(w) for a, w in zip(acts, watches[name])]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {name: layer_stats(ws, following[name]) for name, ws in watches.items()}


def layer_stats(ws: list[_UnitWatch], following: torch.Tensor | None) -> LayerStats:
    """One layer's LayerStats from its modules' watches after the probe's forward pass (one read of the device);
    following: the weight its outputs feed (sparsity.next_weights), for the CETT."""
    alive = torch.cat([w.alive() for w in ws])
    defined = all(w.max_slope is not None for w in ws)
    unsaturated = torch.cat([u for w in ws if (u := w.unsaturated()) is not None]) if defined else alive
    total, total_sq, n = sum(w.sum for w in ws), sum(w.sumsq for w in ws), sum(w.count for w in ws)
    assert isinstance(total, torch.Tensor) and isinstance(total_sq, torch.Tensor), "a watched module never ran"
    mean = total / n
    var = (total_sq / n - mean**2).clamp_min(0) * n / max(n - 1, 1)
    zero, small = layer_fractions([w.sparsity for w in ws])
    cett = (
        members_cett_sparsity(ws[0].sparsity.outputs(), following[None]) if following is not None else zero * math.nan
    )
    columns = [(~alive).sum(), (~unsaturated).sum(), mean, var.sqrt(), zero[0], small[0], cett[0]]
    values = torch.stack([c.double() for c in columns]).tolist()  # one sync
    return LayerStats(
        units=alive.numel(),
        dead=int(values[0]),
        saturated=int(values[1]) if defined else None,
        mean=values[2],
        std=values[3],
        alive=alive,
        zero_fraction=values[4],
        small_fraction=values[5],
        cett_sparsity=None if following is None else values[6],
    )


def overall_fractions(stats: dict[str, LayerStats]) -> tuple[float, float | None]:
    """Dead and saturated fraction over all units, each layer weighted by its number of units; saturated is None
    where any layer's is not defined."""
    units = sum(s.units for s in stats.values())
    if units == 0:
        return 0.0, 0.0
    dead = sum(s.dead for s in stats.values()) / units
    saturated = [s.saturated for s in stats.values() if s.saturated is not None]
    if len(saturated) < len(stats):
        return dead, None
    return dead, sum(saturated) / units


SPARSITY_KEYS = ("zero_fraction", "small_fraction", "cett_sparsity")  # LayerStats' fields, summary.json's keys


def overall_sparsity(stats: dict[str, LayerStats]) -> dict[str, float | None]:
    """Each sparsity over the whole network, each layer weighted by its number of units (as the dead fraction);
    over the layers where it is defined, None where none is (cett_sparsity in a CNN or RNN)."""
    overall: dict[str, float | None] = {}
    for key in SPARSITY_KEYS:
        layers = [(s.units, value) for s in stats.values() if (value := getattr(s, key)) is not None]
        units = sum(n for n, _ in layers)
        overall[key] = sum(n * v for n, v in layers) / units if units else None
    return overall


def weight_grad_norms(model: nn.Module) -> torch.Tensor:
    """L2 norm of each layer's weight gradient, in layer order, as one device tensor (no host sync)."""
    norms = []
    for weights in layer_weights(model).values():
        grads = [w.grad for w in weights if w.grad is not None]
        norms.append(
            torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
            if grads
            else torch.zeros((), device=weights[0].device)
        )
    return torch.stack(norms)


def global_grad_norm(model: nn.Module) -> torch.Tensor:
    """L2 norm of the whole gradient (every parameter), as a device tensor."""
    grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.zeros(())


def record_through_time(model: nn.Module, on: bool) -> None:
    """Make every recurrent layer keep its h_t (with retained gradients) on the next forward pass."""
    for layer in hidden_layers(model):
        if isinstance(layer, Recurrent):
            layer.record = on
            if not on:
                layer.states = []


def retained_grad(h: torch.Tensor) -> torch.Tensor:
    """The gradient a recorded h_t retained (retain_grad) in the backward pass through it."""
    assert h.grad is not None, "no backward pass reached this recorded state"
    return h.grad


def hidden_grad_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    """||dL/dh_t|| per time step of each recurrent layer (directions combined), after a recorded backward."""
    norms = {}
    for i, layer in enumerate(hidden_layers(model)):
        if isinstance(layer, Recurrent) and layer.states:
            per_direction = [  # (T,) each
                torch.stack([retained_grad(h).norm() for h in states]) for states in layer.states
            ]
            norms[f"hidden.{i}"] = torch.stack(per_direction).square().sum(0).sqrt()
    return norms


def probe_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per-layer weight-gradient norms and per-time-step hidden-state gradient norms of the mean loss on (x, y).

    Runs in eval mode and leaves no gradients behind.
    """
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    record_through_time(model, True)
    try:
        F.cross_entropy(model(x), y).backward()
        layers = dict(zip(layer_weights(model), weight_grad_norms(model).tolist()))
        through_time = {k: v.tolist() for k, v in hidden_grad_norms(model).items()}
    finally:
        record_through_time(model, False)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return layers, through_time
