"""harness.networks.stacked.StackedModel: one stacked (K, ...) tensor per parameter and buffer, the members' own modules
views into it. In float64 the stacked forward and its gradients equal each member's own to 1e-9; in float32, on one
CPU thread, a member's logits and gradients do not depend on how many others it is stacked with (MLP, transformer)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from harness.networks import probes, stacked
from harness.networks.activations import activation_spec
from harness.networks.models import build_model
from harness.setup.config import ModelConfig

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
SEQ, IMAGE = (1, 40), (1, 8, 8)  # MNIST-1D's and digits' input shapes
CLASSES, BATCH, TOL = 10, 6, 1e-9


def model_config(name: str, **fields) -> ModelConfig:
    """What `model=NAME` composes (conf/model/NAME.yaml), with fields changed."""
    return dataclasses.replace(ModelConfig(**OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))), **fields)


CASES = {  # (model config, activation, input shape, slow): tests/test_grouped.py's CASES, small (all are fast:
    # under 0.15 s each on one thread; flip the flag of one that grows)
    "mlp": (model_config("mlp", width=8), "relu", SEQ, False),
    "mlp_residual_layernorm_prelu": (model_config("mlp", width=8, residual=True, norm="layer"), "prelu", SEQ, False),
    "mlp_residual_batchnorm_softmax": (
        model_config("mlp", width=8, residual=True, norm="batch"),
        "softmax",
        SEQ,
        False,
    ),
    "mlp_glu": (model_config("mlp", width=8), "glu", SEQ, False),
    "mlp_star_relu_layernorm": (model_config("mlp", width=8, norm="layer"), "star_relu", SEQ, False),
    "cnn_1d": (model_config("cnn", width=6), "relu", SEQ, False),
    "cnn_1d_swiglu": (model_config("cnn", width=6), "swiglu", SEQ, False),
    "cnn_2d_batchnorm_prelu": (model_config("cnn", width=6, norm="batch"), "prelu", IMAGE, False),
    "cnn_2d_layernorm": (model_config("cnn", width=6, norm="layer", kernel_size=3), "relu", IMAGE, False),
    "rnn_gru_bidirectional": (model_config("rnn", width=4), "tanh", SEQ, False),
    "rnn_gru_bidirectional_digits": (model_config("rnn", width=3), "tanh", IMAGE, False),
    "rnn_elman": (model_config("rnn", width=6, cell="elman", bidirectional=False), "tanh", IMAGE, False),
    "rnn_lstm_bidirectional_prelu": (model_config("rnn", width=4, cell="lstm", depth=2), "prelu", IMAGE, False),
    "transformer": (model_config("transformer", width=8, ffn_ratio=2.0), "relu", SEQ, False),
    "transformer_swiglu_digits": (
        model_config("transformer", width=8, patch=2, match_params=True),
        "swiglu",
        IMAGE,
        False,
    ),
    "transformer_prelu_no_norm": (model_config("transformer", width=8, depth=1, norm="none"), "prelu", SEQ, False),
    "transformer_softmax": (model_config("transformer", width=8), "softmax", SEQ, False),
    # 2023-2026: each member's own parameters (per layer, or per unit for the spline); PolyNorm over one member's units
    "mlp_telu": (model_config("mlp", width=8), "telu", SEQ, False),
    "mlp_xielu_layernorm": (model_config("mlp", width=8, norm="layer"), "xielu", SEQ, False),
    "mlp_polyrelu": (model_config("mlp", width=8), "polyrelu", SEQ, False),
    "mlp_polynorm": (model_config("mlp", width=8), "polynorm", SEQ, False),
    "mlp_drelu": (model_config("mlp", width=8, match_params=True), "drelu", SEQ, False),
    "mlp_rational": (model_config("mlp", width=8), "rational", SEQ, False),
    "mlp_spline": (model_config("mlp", width=8, match_params=True), "spline", SEQ, False),
    "cnn_1d_polynorm": (model_config("cnn", width=6), "polynorm", SEQ, False),
    "cnn_1d_drelu": (model_config("cnn", width=6), "drelu", SEQ, False),
    "cnn_2d_spline": (model_config("cnn", width=6, kernel_size=3), "spline", IMAGE, False),
    "cnn_2d_rational_batchnorm": (model_config("cnn", width=6, norm="batch"), "rational", IMAGE, False),
    "rnn_gru_xielu": (model_config("rnn", width=4), "xielu", SEQ, False),
    "rnn_lstm_spline": (model_config("rnn", width=4, cell="lstm"), "spline", IMAGE, False),
    "rnn_elman_polynorm": (model_config("rnn", width=6, cell="elman", bidirectional=False), "polynorm", IMAGE, False),
    "rnn_gru_polyrelu": (model_config("rnn", width=3), "polyrelu", IMAGE, False),
    "transformer_polynorm": (model_config("transformer", width=8, ffn_ratio=2.0), "polynorm", SEQ, False),
    "transformer_spline": (
        model_config("transformer", width=8, ffn_ratio=2.0, match_params=True),
        "spline",
        SEQ,
        False,
    ),
    "transformer_drelu": (model_config("transformer", width=8, match_params=True), "drelu", SEQ, False),
    "transformer_rational": (model_config("transformer", width=8, depth=1), "rational", SEQ, False),
}
DEFAULT_WIDTHS = {  # conf/model's defaults: what `model=NAME` trains
    "default_mlp": (model_config("mlp"), "relu", SEQ, False),
    "default_transformer": (model_config("transformer"), "relu", SEQ, False),
    "default_cnn": (model_config("cnn"), "relu", SEQ, False),
    "default_rnn": (model_config("rnn"), "tanh", SEQ, False),
}
PARAMS = [pytest.param(k, marks=[pytest.mark.slow] if slow else []) for k, (*_, slow) in CASES.items()]


def members(case: str, seeds, dtype=torch.float64, distinct: bool = True) -> list[torch.nn.Module]:
    """One model per seed, built as harness.training.group.build_member_model builds it; with distinct, every parameter
    and running statistic moved by the seed's noise, so that members whose slopes, scales or statistics start equal
    differ."""
    cfg, act, shape, _ = {**CASES, **DEFAULT_WIDTHS}[case]
    spec = activation_spec({"name": act})
    built = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = build_model(cfg, spec, shape, CLASSES, spec.gain).to(dtype)
        if distinct:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.1 * torch.randn_like(p))
                for name, b in model.named_buffers():
                    if "running" in name:
                        b.copy_(torch.rand_like(b) + 0.5)
        built.append(model)
    return built


def batches(case: str, k: int, dtype=torch.float64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(k, BATCH, *{**CASES, **DEFAULT_WIDTHS}[case][2], generator=g, dtype=dtype),
        torch.randint(0, CLASSES, (k, BATCH), generator=g),
    )


def stacked_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sum of the members' mean losses: member i's gradient is its own loss's."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1).sum()


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("case", PARAMS)
def test_stacked_forward_grads_and_statistics_equal_each_members_own(case):
    models = members(case, (1, 2, 3))
    refs = [copy.deepcopy(m) for m in models]  # before stacking: their own leaves and buffers
    sm = stacked.StackedModel(models)
    x, y = batches(case, 3)
    logits, _ = sm.forward(x)
    own = [r(xi) for r, xi in zip(refs, x)]
    assert_close(logits, torch.stack(own))
    stacked_loss(logits, y).backward()
    for o, yi in zip(own, y):
        F.cross_entropy(o, yi).backward()
    for i, r in enumerate(refs):
        for name, p in zip(sm.names, sm.params):
            assert_close(p.grad[i], r.get_parameter(name).grad)
        for name, b in r.named_buffers():  # BatchNorm's running statistics and count, moved by the forward
            assert_close(models[i].get_buffer(name), b)
    assert_close(stacked.weight_grad_norms(sm), torch.stack([probes.weight_grad_norms(r) for r in refs]))
    assert_close(stacked.global_grad_norm(sm), torch.stack([probes.global_grad_norm(r) for r in refs]))
    before = [copy.deepcopy(m.state_dict()) for m in models]
    sm.eval()
    assert not any(m.training for m in models)
    with torch.no_grad():
        assert_close(sm.forward(x)[0], torch.stack([r.eval()(xi) for r, xi in zip(refs, x)]))
    for m, sd in zip(models, before):  # eval normalises with the running statistics and leaves them be
        assert all(torch.equal(v, m.state_dict()[n]) for n, v in sd.items())


@pytest.mark.parametrize(
    "case", ["mlp_residual_batchnorm_softmax", "cnn_2d_batchnorm_prelu", "rnn_gru_bidirectional_digits", "transformer"]
)
def test_members_are_views_into_the_stack(case):
    models = members(case, (1, 2))
    sm = stacked.StackedModel(models)
    assert sm.k == 2 and sm.member_axis and sm.names == [n for n, _ in models[0].named_parameters()]
    other = members(case, (7,))[0].state_dict()
    with torch.no_grad():
        for p in sm.params:
            p.add_(1)
    for i, m in enumerate(models):
        assert all(torch.equal(a, b) for a, b in zip([p[i] for p in sm.params], m.parameters()))
        for name, stack in zip(sm.names, sm.params):  # the member's own Parameter shares the stack's memory
            assert m.get_parameter(name).data_ptr() == stack[i].data_ptr()
    models[1].load_state_dict(other)  # copies into the views: into the stack
    for name, p in zip(sm.names, sm.params):
        assert torch.equal(p[1], other[name])
    for name, _ in models[1].named_buffers():
        assert torch.equal(sm.shadow.get_buffer(name)[1], other[name])
    x, _ = batches(case, 2)
    sm.eval()
    with torch.no_grad():
        assert_close(sm.forward(x)[0][1], models[1](x[1]))  # the member module sees the stacked values


def test_recorded_hidden_states_give_each_members_gradients_through_time():
    case = "rnn_lstm_bidirectional_prelu"
    models = members(case, (1, 2))
    refs = [copy.deepcopy(m) for m in models]
    sm = stacked.StackedModel(models)
    x, y = batches(case, 2)
    logits, states = sm.forward(x, record=True)
    stacked_loss(logits, y).backward()
    for i, r in enumerate(refs):
        probes.record_through_time(r, True)
        F.cross_entropy(r(x[i]), y[i]).backward()
        want = probes.hidden_grad_norms(r)
        got = stacked.hidden_grad_norms(states, i)
        assert got.keys() == want.keys() == {"hidden.0", "hidden.1"}
        for key in want:
            assert_close(got[key], want[key])


@pytest.mark.parametrize("case", ["mlp_residual_batchnorm_softmax", "rnn_gru_bidirectional_digits"])
def test_the_unstacked_fallback_is_the_plain_model(case):
    model = members(case, (1,))[0]
    ref = copy.deepcopy(model)
    calls = []
    one = stacked.StackedModel([model], stack=False, compiled=lambda x: calls.append(1) or model(x))
    assert isinstance(one, stacked.OneModel) and not one.member_axis and one.k == 1
    assert one.params == list(model.parameters())
    x, y = batches(case, 1)
    logits, states = one.forward(x, record=True)
    assert not calls and logits.shape == (1, BATCH, CLASSES)
    F.cross_entropy(logits[0], y[0]).backward()
    probes.record_through_time(ref, True)
    ref_logits = ref(x[0])
    F.cross_entropy(ref_logits, y[0]).backward()
    assert torch.equal(logits[0], ref_logits)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(one.params, ref.parameters()))
    assert torch.equal(stacked.weight_grad_norms(one), probes.weight_grad_norms(ref).unsqueeze(0))
    assert torch.equal(stacked.global_grad_norm(one), probes.global_grad_norm(ref).unsqueeze(0))
    want = probes.hidden_grad_norms(ref)
    assert stacked.hidden_grad_norms(states, 0).keys() == want.keys()
    assert all(torch.equal(stacked.hidden_grad_norms(states, 0)[k], v) for k, v in want.items())
    assert torch.equal(one.forward(x)[0], logits) and calls == [1]  # not recording: the compiled forward


def test_what_cannot_be_stacked_is_refused():
    with pytest.raises(ValueError, match="one member"):
        stacked.StackedModel(members("mlp", (1, 2)), stack=False)
    with pytest.raises(ValueError, match="architecture"):
        stacked.StackedModel([*members("mlp", (1,)), *members("mlp_glu", (1,))])
    spec = activation_spec({"name": "softmax", "dim": 2})
    models = [build_model(CASES["cnn_1d"][0], spec, SEQ, CLASSES) for _ in range(2)]
    with pytest.raises(ValueError, match="dim 2"):
        stacked.StackedModel(models)


# ---------------------------------------------------------------- float32: a member does not depend on K


def member_alone_and_stacked(case: str, ks=(2, 3, 8, 16)) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Member seed 1's logits and gradients, stacked with K - 1 others at position K // 2 (float32, one thread,
    CPU), for each K; the members' batches are their own whatever K is."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = []
        for k in ks:
            seeds = [10 + j for j in range(k)]
            seeds[k // 2] = 1
            sm = stacked.StackedModel(members(case, seeds, torch.float32, distinct=False))
            xs, ys = zip(*(batches(case, 1, torch.float32, seed) for seed in seeds))
            logits, _ = sm.forward(torch.cat(xs))
            stacked_loss(logits, torch.cat(ys)).backward()
            results.append((logits[k // 2].detach(), [p.grad[k // 2] for p in sm.params]))
        return results
    finally:
        torch.set_num_threads(threads)


def max_relative_difference(results) -> float:
    (logits, grads), worst = results[0], 0.0
    for other_logits, other_grads in results[1:]:
        for a, b in zip([logits, *grads], [other_logits, *other_grads]):
            worst = max(worst, ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item())
    return worst


# Measured (torch 2.14 CPU, AVX2 capability, one thread): the largest relative difference of a member's logits or
# gradients in groups of K in {3, 8, 16} from K=2. The CNN's grouped convolution takes other kernels as K changes;
# the RNN's gates' sigmoid rounds differently where a member's elements fall in the vectorised body or in the
# scalar tail of the whole (K, B, H) tensor, so an h_t differs in its last bit at some K. The MLP's bmm and the
# transformer's per-row kernels do not depend on K. (A group of one is not a StackedModel: a single run trains
# its model's own modules, bit for bit what a plain torch loop computes: tests/test_golden.py.) docs/grouped.md.
MEASURED_K_DEPENDENCE = {"mlp": 0.0, "transformer": 0.0, "cnn": 4e-7, "rnn": 2e-7}


@pytest.mark.parametrize("family", ["mlp", "transformer", "cnn", "rnn"])
def test_float32_member_does_not_depend_on_how_many_it_is_stacked_with(family):
    results = member_alone_and_stacked(f"default_{family}")
    bound = MEASURED_K_DEPENDENCE[family]
    worst = max_relative_difference(results)
    print(f"{family}: max relative difference across K = {worst:.3g}")  # the figure docs/grouped.md gives
    if bound == 0.0:
        for logits, grads in results[1:]:
            assert torch.equal(logits, results[0][0])
            assert all(torch.equal(a, b) for a, b in zip(grads, results[0][1]))
    else:
        assert worst <= bound
