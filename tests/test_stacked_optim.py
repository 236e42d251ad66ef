"""StackedOptimizer and clip_member_grads_ against torch.optim / clip_grad_norm_ run on each member alone (float64,
CPU). The stacked loss is each member's own loss on its own slices (F.linear on stacked[j][i]), so the stacked
grads are bit-for-bit the reference grads and any difference is the optimizer's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from harness.training.stacked_optim import StackedOptimizer, clip_member_grads_

LRS, WDS = [1e-2, 3e-3, 5e-2], [0.0, 1e-2, 5e-2]
BETAS, EPS = (0.8, 0.99), 1e-7  # not torch's defaults, so ignoring them fails
KINDS = [("adam", 0.0), ("adamw", 0.0), ("sgd", 0.9), ("sgd", 0.0)]
KIND_IDS = ["adam", "adamw", "sgd-momentum", "sgd"]


def make_models(k: int) -> list[nn.Module]:
    models = []
    for i in range(k):
        torch.manual_seed(100 + i)
        models.append(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double())
    return models


def stack_params(models: list[nn.Module]) -> list[torch.Tensor]:
    per_member = [list(m.parameters()) for m in models]
    return [torch.stack([p.detach() for p in ps]).requires_grad_(True) for ps in zip(*per_member)]


def torch_opt(kind: str, momentum: float, params, lr: float, wd: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=wd, betas=BETAS, eps=EPS)


def stacked_opt(kind: str, momentum: float, params, lrs=LRS, wds=WDS, **kw) -> StackedOptimizer:
    return StackedOptimizer(params, kind, lrs, wds, momentum=momentum, betas=BETAS, eps=EPS, **kw)


def member_loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2 = params  # the nn.Sequential above, op for op
    return ((F.linear(torch.tanh(F.linear(x, w1, b1)), w2, b2) - y) ** 2).mean()


def batch(step: int, member: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Member `member`'s data at `step`, the same whatever K and whichever members run."""
    gen = torch.Generator().manual_seed(1000 * step + member)
    return (
        torch.randn(8, 4, generator=gen, dtype=torch.float64),
        torch.randn(8, 3, generator=gen, dtype=torch.float64),
    )


def ref_step(models, opts, step: int) -> None:
    for i, (m, opt) in enumerate(zip(models, opts)):
        opt.zero_grad()
        member_loss(list(m.parameters()), *batch(step, i)).backward()
        opt.step()


def stacked_loss(stacked: list[torch.Tensor], step: int) -> torch.Tensor:
    for p in stacked:
        p.grad = None
    return sum(member_loss([p[i] for p in stacked], *batch(step, i)) for i in range(stacked[0].shape[0]))


def stacked_backward(stacked: list[torch.Tensor], step: int) -> None:
    stacked_loss(stacked, step).backward()


def assert_state_dict_equal(ours: dict, theirs: dict) -> None:
    assert ours["param_groups"] == theirs["param_groups"]
    assert ours["state"].keys() == theirs["state"].keys()
    for j, st in theirs["state"].items():
        assert ours["state"][j].keys() == st.keys(), j
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                assert ours["state"][j][key].dtype == value.dtype, (j, key)
                torch.testing.assert_close(ours["state"][j][key], value, rtol=1e-9, atol=1e-15)
            else:
                assert ours["state"][j][key] == value, (j, key)


def assert_members_match(stacked, models, rtol=1e-9) -> None:
    for i, m in enumerate(models):
        for p, ref in zip(stacked, m.parameters()):
            torch.testing.assert_close(p[i], ref.detach(), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("kind,momentum", KINDS, ids=KIND_IDS)
def test_matches_torch_optimizer_per_member(kind, momentum):
    models = make_models(3)
    opts = [torch_opt(kind, momentum, m.parameters(), lr, wd) for m, lr, wd in zip(models, LRS, WDS)]
    stacked = stack_params(models)
    sopt = stacked_opt(kind, momentum, stacked)
    for i in range(3):  # never stepped: torch's empty state, same param_groups
        assert_state_dict_equal(sopt.member_state_dict(i), opts[i].state_dict())
    for step in range(100):
        ref_step(models, opts, step)
        stacked_backward(stacked, step)
        sopt.step()
    assert_members_match(stacked, models)
    for i in range(3):
        assert_state_dict_equal(sopt.member_state_dict(i), opts[i].state_dict())


def run_with_member1_paused(kind, momentum, paused: range, steps: int = 20):
    """Train 3 members; member 1 is inactive (and its grads NaN) on the `paused` steps. Checks member 1 stays
    bit-for-bit frozen, params and state, while paused. Returns the final stacked params."""
    stacked = stack_params(make_models(3))
    sopt = stacked_opt(kind, momentum, stacked)
    frozen = None
    for step in range(steps):
        stacked_backward(stacked, step)
        active = torch.tensor([True, step not in paused, True])
        if step in paused:
            for p in stacked:
                p.grad[1] = float("nan")
            frozen = frozen or ([p[1].clone() for p in stacked], sopt.member_state_dict(1))
        sopt.step(active)
        if step in paused:
            assert all(torch.equal(p[1], q) for p, q in zip(stacked, frozen[0]))
            after = sopt.member_state_dict(1)
            for j, st in frozen[1]["state"].items():
                assert all(torch.equal(after["state"][j][key], v) for key, v in st.items())
    return stacked


@pytest.mark.parametrize("kind,momentum", KINDS, ids=KIND_IDS)
def test_inactive_member_frozen_and_isolated(kind, momentum):
    paused = run_with_member1_paused(kind, momentum, paused=range(5, 12))
    always = run_with_member1_paused(kind, momentum, paused=range(0))
    for p, q in zip(paused, always):
        assert torch.equal(p[0], q[0]) and torch.equal(p[2], q[2])
        assert torch.isfinite(p[1]).all()  # member 1 resumes cleanly: no NaN got into its state
        assert not torch.equal(p[1], q[1])  # ... and it really skipped those steps


@pytest.mark.parametrize("kind,momentum", KINDS, ids=KIND_IDS)
def test_load_member_state_dict_then_continue(kind, momentum):
    models = make_models(3)
    opts = [torch_opt(kind, momentum, m.parameters(), lr, wd) for m, lr, wd in zip(models, LRS, WDS)]
    for step in range(15):
        ref_step(models, opts, step)
    stacked = stack_params(models)
    # Wrong lr/wd on purpose: loading a torch state_dict brings the member's own, as torch's load does.
    sopt = stacked_opt(kind, momentum, stacked, lrs=[0.5] * 3, wds=[0.5] * 3)
    for i, opt in enumerate(opts):
        sopt.load_member_state_dict(i, opt.state_dict())
    for step in range(15, 30):
        ref_step(models, opts, step)
        stacked_backward(stacked, step)
        sopt.step()
    assert_members_match(stacked, models)
    for i, opt in enumerate(opts):
        assert_state_dict_equal(sopt.member_state_dict(i), opt.state_dict())
        clone = torch_opt(kind, momentum, make_models(1)[0].parameters(), 1.0, 0.0)
        clone.load_state_dict(sopt.member_state_dict(i))  # our format loads into torch's optimizer
        assert_state_dict_equal(sopt.member_state_dict(i), clone.state_dict())


@pytest.mark.parametrize("kind,momentum", KINDS, ids=KIND_IDS)
def test_loading_empty_state_restarts_member(kind, momentum):
    models = make_models(3)
    stacked = stack_params(models)
    sopt = stacked_opt(kind, momentum, stacked)
    for step in range(5):
        stacked_backward(stacked, step)
        sopt.step()
    fresh = torch_opt(kind, momentum, models[0].parameters(), LRS[0], WDS[0])
    with torch.no_grad():
        for p, ref in zip(stacked, models[0].parameters()):
            ref.copy_(p[0])
    sopt.load_member_state_dict(0, fresh.state_dict())
    assert_state_dict_equal(sopt.member_state_dict(0), fresh.state_dict())
    for step in range(5, 10):  # member 0 now steps exactly as a brand-new torch optimizer would
        ref_step(models[:1], [fresh], step)
        stacked_backward(stacked, step)
        sopt.step()
    assert_members_match(stacked, models[:1])


@pytest.mark.parametrize("kind,momentum", KINDS, ids=KIND_IDS)
def test_member_axis_false_matches_plain_module(kind, momentum):
    ref, plain = make_models(1)[0], make_models(1)[0]
    opt = torch_opt(kind, momentum, ref.parameters(), LRS[2], WDS[2])
    sopt = stacked_opt(kind, momentum, list(plain.parameters()), [LRS[2]], [WDS[2]], member_axis=False)
    for step in range(30):
        ref_step([ref], [opt], step)
        ref_step([plain], [sopt], step)
    for p, q in zip(plain.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    assert_state_dict_equal(sopt.member_state_dict(0), opt.state_dict())


def test_clip_member_grads_matches_clip_grad_norm():
    stacked = stack_params(make_models(3))
    gen = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.01, 1.0, 30.0], dtype=torch.float64)  # one member under max_norm, two over
    for p in stacked:
        p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale.view(-1, *[1] * (p.dim() - 1))
    stacked[1].grad = None  # skipped, as clip_grad_norm_ skips it
    expected = []
    for i in range(3):
        member = [torch.zeros_like(p[i], requires_grad=True) for p in stacked]
        for m, p in zip(member, stacked):
            m.grad = None if p.grad is None else p.grad[i].clone()
        norm = torch.nn.utils.clip_grad_norm_(member, max_norm=1.5)
        expected.append((norm, [m.grad for m in member]))
    norms = clip_member_grads_(stacked, max_norm=1.5)
    assert norms.shape == (3,)
    for i, (norm, grads) in enumerate(expected):
        torch.testing.assert_close(norms[i], norm, rtol=1e-12, atol=0)
        for p, g in zip(stacked, grads):
            assert (p.grad is None) == (g is None)
            if g is not None:
                torch.testing.assert_close(p.grad[i], g, rtol=1e-12, atol=1e-15)
    plain = make_models(1)[0]  # member_axis=False clips a plain module's grads in place
    for p in plain.parameters():
        p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64) * 10
    ref_params = [torch.zeros_like(p, requires_grad=True) for p in plain.parameters()]
    for rp, p in zip(ref_params, plain.parameters()):
        rp.grad = p.grad.clone()
    norm = torch.nn.utils.clip_grad_norm_(ref_params, max_norm=1.5)
    torch.testing.assert_close(clip_member_grads_(list(plain.parameters()), 1.5, member_axis=False)[0], norm)
    for p, rp in zip(plain.parameters(), ref_params):
        torch.testing.assert_close(p.grad, rp.grad, rtol=1e-12, atol=1e-15)


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def count_ops(kind: str, momentum: float, k: int) -> list[str]:
    stacked = stack_params(make_models(k))
    sopt = stacked_opt(kind, momentum, stacked, lrs=[1e-2] * k, wds=[1e-2] * k)
    stacked_backward(stacked, 0)
    active = torch.arange(k) % 2 == 0
    sopt.step(active)  # the first step must not differ either, but count a later one too
    with OpCounter() as counter:
        sopt.step(active)
        clip_member_grads_(stacked, 1.0)
    return counter.ops


@pytest.mark.parametrize("kind,momentum", KINDS, ids=KIND_IDS)
def test_step_op_count_independent_of_members(kind, momentum):
    ops = count_ops(kind, momentum, 2)
    assert ops and ops == count_ops(kind, momentum, 16)
    # .item()/.tolist() would dispatch _local_scalar_dense: a host sync that breaks CUDA-graph capture.
    assert not any("_local_scalar_dense" in op for op in ops)


@pytest.mark.parametrize("enabled", [False, True])
def test_grad_scaler(enabled):
    models = make_models(3)
    # SGD, not Adam: Adam barely sees a forgotten unscale (it is scale-invariant up to eps), SGD sees it fully.
    opts = [torch_opt("sgd", 0.9, m.parameters(), lr, wd) for m, lr, wd in zip(models, LRS, WDS)]
    stacked = stack_params(models)
    sopt = stacked_opt("sgd", 0.9, stacked)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, enabled=enabled)  # power of 2: unscaling is exact
    active = torch.tensor([True, False, True])
    for step in range(10):
        ref_step(models[:1], opts[:1], step)
        scaler.scale(stacked_loss(stacked, step)).backward()
        scaler.unscale_(sopt)
        scaler.step(sopt, active)  # passes `active` through to step
        scaler.update()
    assert torch.equal(stacked[0][1], models[1][0].weight.detach())  # inactive all along
    for p, ref in zip(stacked, models[0].parameters()):
        torch.testing.assert_close(p[0], ref.detach(), rtol=1e-9, atol=1e-12)
    if enabled:  # an inf grad: the scaler skips the whole step and halves its scale
        before = [p.detach().clone() for p in stacked]
        stacked[0].grad[0, 0, 0] = float("inf")
        scaler.step(sopt, active)
        scaler.update()
        assert all(torch.equal(p, q) for p, q in zip(stacked, before))
        assert scaler.get_scale() == 2.0**9
