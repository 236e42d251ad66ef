"""harness.networks.sparsity: activation sparsity per layer (outputs exactly zero, near zero relative to their sample's
RMS, and the CETT-based sparsity of "ReLU^2 Wins") against hand-worked cases, a brute-force CETT search, and the
outputs themselves; every member of a stack gets what its own probe gives; the numbers reach metrics.csv and
summary.json."""

from __future__ import annotations

import itertools
import json
import math
from collections import namedtuple

import pytest
import torch

from harness.common import metrics
from harness.networks import probes, sparsity
from harness.networks.activations import activation_spec
from harness.networks.models import CNN, MLP, RNN, Transformer
from harness.records.recorder import Recorder, TrainState
from harness.records.schema import SCHEMA_VERSION, Unreadable, summary_model, validated
from harness.report.headline import sparsity_text
from harness.training.loop import Member
from tests.test_stacked_model import CASES, members
from tests.test_stacked_probes import probe_both, probe_inputs

SEEDS = (1, 2, 3)


def brute_force_cett(h: torch.Tensor, w: torch.Tensor, eps: float) -> float:
    """CETT by its definition, one sample at a time: ||sum of the dropped h_i W[:, i]|| / ||W h||, mean over rows."""
    ratios = []
    for row in h:
        dropped = sum(
            (row[i] * w[:, i] for i in range(len(row)) if abs(row[i]) * w[:, i].norm() <= eps),
            torch.zeros(w.shape[0], dtype=h.dtype),
        )
        ratios.append(dropped.norm() / (w @ row).norm())
    return float(torch.stack(ratios).mean())


def test_cett_of_a_hand_worked_layer():
    """Contributions 1, 2, 3, 4 along orthogonal axes: dropping 1 costs 1/sqrt(30) = 0.18 <= 0.2, dropping 1 and 2
    costs sqrt(5/30) = 0.41: eps is 1 and one neuron in four is sparse."""
    h = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]], dtype=torch.float64)
    found, eps = sparsity.cett_sparsity(h, torch.eye(4, dtype=torch.float64)[None])
    assert (found.item(), eps.item()) == (0.25, 1.0)
    # the bound moves eps: at 0.45 the 1 and 2 go, at 0.1 nothing but exact zeros
    assert sparsity.cett_sparsity(h, torch.eye(4, dtype=torch.float64)[None], 0.45)[0].item() == 0.5
    assert sparsity.cett_sparsity(h, torch.eye(4, dtype=torch.float64)[None], 0.1)[0].item() == 0.0


def test_cett_matches_the_largest_threshold_by_brute_force_where_cett_grows_with_eps():
    """One output and non-negative contributions: CETT grows with eps, so the bisection must find the largest of all
    candidate thresholds whose CETT is at most 0.2, as a scan of every candidate does."""
    g = torch.Generator().manual_seed(3)
    h = torch.rand(6, 5, generator=g, dtype=torch.float64)
    w = torch.rand(1, 5, generator=g, dtype=torch.float64)
    norms = (h.abs() * w.norm(dim=0)).flatten().sort().values
    want = max(e for e in [0.0, *norms.tolist()] if brute_force_cett(h, w, e) <= sparsity.CETT_BOUND)
    found, eps = sparsity.cett_sparsity(h[None], w[None])
    assert eps.item() == want
    assert found.item() == pytest.approx((norms <= want).double().mean().item(), abs=0)


def test_cett_ends_on_a_crossing_in_general():
    """Random signs (CETT need not grow with eps): the eps found has CETT <= 0.2 and the next norm above it does
    not, each checked by the definition; and the sparsity is the fraction of contributions at or below it."""
    g = torch.Generator().manual_seed(5)
    h = torch.randn(2, 7, 6, generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    found, eps = sparsity.cett_sparsity(h, w)
    for k in range(2):
        norms = (h[k].abs() * w[k].norm(dim=0)).flatten().sort().values
        above = norms[norms > eps[k]]
        assert brute_force_cett(h[k], w[k], eps[k].item()) <= sparsity.CETT_BOUND
        assert above.numel() and brute_force_cett(h[k], w[k], above[0].item()) > sparsity.CETT_BOUND
        assert found[k].item() == (norms <= eps[k]).double().mean().item()


def test_a_dead_layer_is_all_sparse_and_its_cett_defined():
    """Every output 0 (W h = 0 on every row): nothing is lost by dropping everything, no division by zero."""
    found, eps = sparsity.cett_sparsity(torch.zeros(1, 4, 3), torch.randn(1, 2, 3))
    assert (found.item(), eps.item()) == (1.0, 0.0)


def outputs_of(net: torch.nn.Module, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Every activation module's outputs on x, by forward hook (the reference the probe is checked against)."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = [
        act.register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, []).append(o.detach()))
        for name, acts in probes.activation_layers(net).items()
        for act in acts
    ]
    net.eval()
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return seen


def small_by_hand(outputs: list[torch.Tensor]) -> float:
    """|h| <= 1% of the RMS of the same call's sample (its units and positions), counted one sample at a time."""
    small = total = 0
    for out in outputs:
        for sample in out:
            rms = sample.square().mean().sqrt()
            small += int((sample.abs() <= sparsity.RELATIVE_TOL * rms).sum())
            total += sample.numel()
    return small / total


NETWORKS = {  # (network, input shape): one per family, tiny
    "mlp": (lambda act: MLP(12, 3, act, depth=2, width=10), (12,)),
    "cnn": (lambda act: CNN((1, 16), 3, act, depth=2, width=4), (1, 16)),
    "rnn": (lambda act: RNN((1, 8), 3, act, depth=1, width=5), (1, 8)),
    "transformer": (lambda act: Transformer((1, 16), 3, act, depth=1, width=8, heads=2, d_ff=12), (1, 16)),
}


@pytest.mark.parametrize(
    ("family", "act"),
    [(f, a) for f, a in itertools.product(NETWORKS, ["relu", "gelu", "reglu"]) if (f, a) != ("rnn", "reglu")],
)  # the RNN refuses gated units
def test_zero_and_small_fractions_count_the_outputs(family, act):
    """The probe's fractions equal counts over the outputs the activation modules give (a gated unit's: u f(g)),
    and the CETT is there exactly where the outputs feed one Linear (MLP, transformer FFN)."""
    torch.manual_seed(0)
    build, shape = NETWORKS[family]
    net = build(activation_spec({"name": act}))
    x = torch.randn(40, *shape)
    stats = probes.probe_units(net, x)
    for name, outputs in outputs_of(net, x).items():
        flat = torch.cat([o.flatten() for o in outputs])
        assert stats[name].zero_fraction == (flat == 0).double().mean().item()
        assert stats[name].small_fraction == pytest.approx(small_by_hand(outputs), abs=1e-12)
        assert (stats[name].cett_sparsity is None) == (family in ("cnn", "rnn"))
    if act == "relu" and family in ("mlp", "transformer"):  # about half the ReLU outputs are 0
        assert all(0.2 < s.zero_fraction < 0.8 for s in stats.values())


def test_cett_reads_the_next_layers_weight():
    """The MLP's last hidden layer feeds the head, the others the next hidden Linear; the transformer's FFN feeds
    its output projection: the probe's CETT sparsity is cett_sparsity on those weights."""
    torch.manual_seed(1)
    mlp = MLP(12, 3, activation_spec({"name": "gelu"}), depth=2, width=10)
    tf = NETWORKS["transformer"][0](activation_spec({"name": "swiglu"}))
    assert sparsity.next_weights(mlp) == {"hidden.0": mlp.hidden[1].linear.weight, "hidden.1": mlp.head.weight}
    assert sparsity.next_weights(tf) == {"hidden.0": tf.hidden[0].ffn_out.weight}
    for net, x in ((mlp, torch.randn(30, 12)), (tf, torch.randn(30, 1, 16))):
        stats = probes.probe_units(net, x)
        outputs = outputs_of(net, x)
        for name, weight in sparsity.next_weights(net).items():
            assert weight is not None
            want, _ = sparsity.cett_sparsity(outputs[name][0][None].double(), weight.detach()[None].double())
            assert stats[name].cett_sparsity == pytest.approx(want.item(), abs=1e-9)


def test_overall_sparsity_weights_layers_by_units():
    stats = {
        "hidden.0": probes.LayerStats(4, 0, 0, 0.0, 1.0, zero_fraction=0.5, small_fraction=0.5, cett_sparsity=None),
        "hidden.1": probes.LayerStats(12, 0, 0, 0.0, 1.0, zero_fraction=0.1, small_fraction=0.3, cett_sparsity=0.6),
    }
    overall = probes.overall_sparsity(stats)
    assert overall["zero_fraction"] == pytest.approx((4 * 0.5 + 12 * 0.1) / 16)
    assert overall["small_fraction"] == pytest.approx((4 * 0.5 + 12 * 0.3) / 16)
    assert overall["cett_sparsity"] == pytest.approx(0.6)  # over the layers where it is defined
    assert probes.overall_sparsity({"hidden.0": stats["hidden.0"]})["cett_sparsity"] is None


# one case of each family and layout (gated halves, BatchNorm, 2-D channels, two directions, tokens), and the
# 2023-2026 units: dReLU's two ReLU halves, PolyNorm over one member's channels, per-unit splines
STACKED = ["mlp_glu", "mlp_residual_batchnorm_softmax", "cnn_2d_batchnorm_prelu", "rnn_gru_bidirectional",
           "transformer_swiglu_digits", "mlp_drelu", "cnn_1d_polynorm", "rnn_lstm_spline",
           "mlp_spline"]  # fmt: skip


@pytest.mark.parametrize("case", STACKED)
def test_each_member_gets_its_own_sparsity(case):
    """The stacked probe (chunked, K members at once) gives each member exactly its own probe's sparsity."""
    spec = activation_spec({"name": CASES[case][1]})
    got, want = probe_both(members(case, SEEDS), probe_inputs(case), [spec.max_slope] * len(SEEDS))
    for g, w in zip(got, want):
        for name in w:
            for key in probes.SPARSITY_KEYS:
                a, b = getattr(g[name], key), getattr(w[name], key)
                assert (a is None) == (b is None), (name, key)
                assert a is None or math.isclose(a, b, abs_tol=1e-12), (name, key, a, b)


def test_each_probe_writes_its_sparsity_rows_and_the_summary_its_keys():
    """metrics.csv gets each layer's three sparsities at every probe (the CETT's where defined); the summary the
    final probe's, overall and by layer, and nulls when there was no final probe (a diverged run)."""
    stats = {
        "hidden.0": probes.LayerStats(4, 0, 0, 0.0, 1.0, zero_fraction=0.5, small_fraction=0.5, cett_sparsity=None),
        "hidden.1": probes.LayerStats(12, 0, 0, 0.0, 1.0, zero_fraction=0.1, small_fraction=0.3, cett_sparsity=0.6),
    }
    rec = Recorder(TrainState())
    rec.units(10, stats)
    rows = {
        (metric, layer): value for step, split, metric, layer, value, _ in rec.rows if metric in probes.SPARSITY_KEYS
    }
    assert rows == {
        ("zero_fraction", "hidden.0"): 0.5,
        ("small_fraction", "hidden.0"): 0.5,
        ("zero_fraction", "hidden.1"): 0.1,
        ("small_fraction", "hidden.1"): 0.3,
        ("cett_sparsity", "hidden.1"): 0.6,
    }
    summary = Member.sparsity(stats)
    assert summary["cett_sparsity_by_layer"] == {"hidden.0": None, "hidden.1": 0.6}
    assert summary["zero_fraction"] == pytest.approx((4 * 0.5 + 12 * 0.1) / 16)
    assert Member.sparsity({}) == {
        **dict.fromkeys(probes.SPARSITY_KEYS),
        **{f"{key}_by_layer": {} for key in probes.SPARSITY_KEYS},
    }


def test_the_summary_schema_and_the_dead_units_answer_carry_them():
    """summary.json's reader takes the new keys (a fraction in [0, 1] or null) and refuses one past 1; the three are
    registered under the dead-units question, whose answer names those a run measured."""
    record = {"schema_version": SCHEMA_VERSION, "status": "ok", "config_hash": "x", "cett_sparsity": None}
    by_layer = {f"{key}_by_layer": {"hidden.0": 0.25} for key in probes.SPARSITY_KEYS}
    validated(summary_model(metrics.METRICS), json.dumps({**record, **by_layer, "zero_fraction": 0.5}))
    with pytest.raises(Unreadable, match="zero_fraction_by_layer"):
        validated(summary_model(metrics.METRICS), json.dumps({**record, "zero_fraction_by_layer": {"hidden.0": 1.5}}))
    assert set(probes.SPARSITY_KEYS) <= {m.key for m in metrics.answering("dead units")}
    Row = namedtuple("Row", ["zero_mean", "cett_mean", "small_mean"])
    assert sparsity_text(Row(0.41, math.nan, 0.44)) == " (activations 41% exactly zero, 44% near zero)"
    assert sparsity_text(Row(math.nan, math.nan, math.nan)) == ""  # runs from before they were measured
