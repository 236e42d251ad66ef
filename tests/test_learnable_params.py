"""The life of a learnable activation's parameters: no weight decay unless trainer.activation_decay says so (the
stacked optimizer against torch.optim with a second param group at weight decay 0; a group member against its own
run), and their learnt shape in summary.json at initialisation and at the end (against the modules themselves).
The K = 1 run against a plain torch loop with two param groups is tests/test_one_loop.py's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from harness.networks import learnt
from harness.networks.activations import activation_spec, make_activation
from harness.networks.models import build_model
from harness.setup.data import load_dataset
from harness.setup.optimizers import activation_parameter_names, decay_flags
from harness.setup.resolve import resolve
from harness.training.group import build_member_model
from harness.training.stacked_optim import StackedOptimizer
from harness.training.train import run
from tests.test_grouped import assert_twins, run_twins
from tests.test_stacked_optim import BETAS, EPS, KIND_IDS, KINDS, LRS, batch, member_loss, stack_params, torch_opt

WDS = [0.05, 0.1, 0.5]  # every member decays: an exempt tensor that decayed would be far off
EXEMPT = [False, True, False, True]  # w1, b1, w2, b2: decay applies to the weights only


def make_models(k: int) -> list[nn.Module]:
    models = []
    for i in range(k):
        torch.manual_seed(200 + i)
        models.append(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double())
    return models


def two_group_opt(kind: str, momentum: float, model: nn.Module, lr: float, wd: float) -> torch.optim.Optimizer:
    """torch's optimizer with the exempt tensors in a second param group at weight decay 0."""
    params = list(model.parameters())
    opt = torch_opt(kind, momentum, [p for p, e in zip(params, EXEMPT) if not e], lr, wd)
    opt.add_param_group({"params": [p for p, e in zip(params, EXEMPT) if e], "weight_decay": 0.0})
    return opt


def train_reference(models: list[nn.Module], opts: list[torch.optim.Optimizer], steps: int) -> None:
    for step in range(steps):
        for i, (m, opt) in enumerate(zip(models, opts)):
            opt.zero_grad()
            member_loss(list(m.parameters()), *batch(step, i)).backward()
            opt.step()


@pytest.mark.parametrize("kind,momentum", KINDS, ids=KIND_IDS)
def test_exempt_tensors_step_as_torch_with_a_second_param_group_at_zero_decay(kind, momentum):
    models = make_models(3)
    stacked = stack_params(models)
    decay = [not e for e in EXEMPT]
    sopt = StackedOptimizer(stacked, kind, LRS, WDS, momentum=momentum, betas=BETAS, eps=EPS, decay=decay)
    train_reference(models, [two_group_opt(kind, momentum, m, lr, wd) for m, lr, wd in zip(models, LRS, WDS)], 40)
    for step in range(40):
        for p in stacked:
            p.grad = None
        sum(member_loss([p[i] for p in stacked], *batch(step, i)) for i in range(3)).backward()
        sopt.step()
    for i, m in enumerate(models):
        for p, ref in zip(stacked, m.parameters()):
            torch.testing.assert_close(p[i], ref.detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind,momentum", KINDS, ids=KIND_IDS)
def test_one_model_exempt_tensors_step_as_torch_bit_for_bit(kind, momentum):
    """member_axis=False (a single run's own modules, torch's fused kernels): bit for bit torch's two groups."""
    model, reference = make_models(1)[0], make_models(1)[0]
    sopt = StackedOptimizer(
        list(model.parameters()), kind, [LRS[0]], [0.5], momentum, BETAS, EPS, member_axis=False,
        decay=[not e for e in EXEMPT],
    )  # fmt: skip
    train_reference([reference], [two_group_opt(kind, momentum, reference, LRS[0], 0.5)], 40)
    for step in range(40):
        model.zero_grad()
        member_loss(list(model.parameters()), *batch(step, 0)).backward()
        sopt.step()
    for p, ref in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, ref)


def test_decay_flags_must_name_every_parameter():
    with pytest.raises(ValueError, match="decay has 1 flags for 4 parameters"):
        StackedOptimizer(stack_params(make_models(2)), "adam", [0.1, 0.1], [0.1, 0.1], decay=[True])


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["activation=prelu"], {"hidden.0.act.weight", "hidden.1.act.weight"}),
        (["activation=star_relu", "model.depth=1"], {"hidden.0.act.scale", "hidden.0.act.bias"}),
        (["activation=relu"], set()),
        (
            ["activation=prelu", "model=rnn", "model.bidirectional=true", "model.depth=1"],
            {"hidden.0.cells.0.act.weight", "hidden.0.cells.1.act.weight"},
        ),
        (["activation=star_relu", "model=transformer", "model.depth=1"], {"hidden.0.act.scale", "hidden.0.act.bias"}),
        (
            ["activation=spline", "model.depth=1"],
            {"hidden.0.act.base_weight", "hidden.0.act.spline_weight", "hidden.0.act.coef"},
        ),
        (
            ["activation=rational", "model=transformer", "model.depth=1"],
            {"hidden.0.act.numerator", "hidden.0.act.denominator"},
        ),
    ],
)
def test_the_exempt_parameters_are_exactly_the_activation_modules(tiny, overrides, expected):
    config = tiny(*overrides, "model.width=8")
    spec = activation_spec(config.activation)
    model = build_model(config.model, spec, (1, 40), 10, spec.gain)  # MNIST-1D: one channel of 40 samples
    assert activation_parameter_names(model) == expected
    names = [n for n, _ in model.named_parameters()]
    assert [not f for f in decay_flags(model, names, config.trainer)] == [n in expected for n in names]
    assert all(decay_flags(model, names, tiny(*overrides, "trainer.activation_decay=true").trainer))


@pytest.mark.parametrize(
    "activation",
    [
        pytest.param("prelu", marks=pytest.mark.slow),
        "star_relu",
        pytest.param("xielu", marks=pytest.mark.slow),
        "spline",
    ],
)
def test_group_members_equal_their_own_runs_with_weight_decay(tiny, tmp_path, activation):
    """Members at different weight decays, the activations exempt: each member's records and summary (its learnt
    shape included) equal its run alone within 1e-9 in float64."""
    members = [["seed=1", "trainer.weight_decay=0.2"], ["seed=2", "trainer.weight_decay=0.5", "trainer.lr=0.003"]]
    common = [f"activation={activation}", "trainer.steps=30", "trainer.optimizer=adamw", "model.width=8"]
    for one, grouped in run_twins(tiny, tmp_path, common, members):
        assert grouped["group"]["size"] == 2 and one["activation_params_final"]
        assert_twins(one, grouped)
    assert one["activation_params_final"] != grouped["activation_params_init"]  # it learnt something


def test_the_summary_records_the_learnt_shape_at_init_and_at_the_end(tiny, tmp_path, data_root):
    config = tiny("activation=prelu", "model=rnn", "model.bidirectional=true", "model.depth=1", "model.width=4",
                  "trainer.steps=4")  # fmt: skip
    summary = run(config, tmp_path / "run")
    assert summary["status"] == "ok", summary.get("error")
    d = config.dataset
    data = load_dataset(d.name, data_root, False, d.train_size, d.val_fraction, torch.device("cpu"))
    fresh = build_member_model(resolve(config), data)  # the run's model at initialisation
    cells = fresh.hidden[0].cells
    expected = {"hidden.0": {f"{j}.weight": cells[j].act.weight.tolist() for j in range(2)}}
    assert summary["activation_params_init"] == expected
    final = summary["activation_params_final"]["hidden.0"]
    assert final.keys() == {"0.weight", "1.weight"} and final != expected["hidden.0"]
    plain = run(tiny("activation=relu", "trainer.steps=4"), tmp_path / "relu")
    assert plain["activation_params_init"] == plain["activation_params_final"] == {}


def test_a_recorded_shape_loads_back_into_a_fresh_module():
    trained = make_activation("star_relu")
    with torch.no_grad():
        trained.scale.fill_(1.7)
        trained.bias.fill_(-0.3)
    model = nn.Module()
    model.hidden = nn.ModuleList([nn.Module()])
    model.hidden[0].act = trained
    recorded = learnt.activation_parameters(model)
    assert recorded == {"hidden.0": {"scale": [pytest.approx(1.7)], "bias": [pytest.approx(-0.3)]}}
    fresh = learnt.load_parameters(make_activation("star_relu"), recorded["hidden.0"])
    z = torch.linspace(-3, 3, 61, dtype=torch.float64)
    expected = 1.7 * torch.relu(z) ** 2 - 0.3  # StarReLU's formula with the learnt values
    torch.testing.assert_close(fresh(z), expected, rtol=1e-6, atol=1e-6)
    per_channel = learnt.load_parameters(nn.PReLU(), {"weight": [0.1, 0.2, 0.3]})  # per-unit: the recorded shape
    torch.testing.assert_close(per_channel(-torch.ones(2, 3, dtype=torch.float64))[0], torch.tensor(
        [-0.1, -0.2, -0.3], dtype=torch.float64))  # fmt: skip
    with pytest.raises(ValueError, match="not the module's"):
        learnt.load_parameters(copy.deepcopy(trained), {"scale": [1.0]})
    assert learnt.one_module({"0.weight": [1.0], "1.weight": [2.0]}, 1) == {"weight": [2.0]}


def test_the_learnt_shape_of_prelu_is_its_formula_with_the_recorded_slope():
    from harness.report.learnt_gallery import Z, shape

    drawn = shape("prelu", {}, {"weight": [0.3]})
    z = Z.numpy()
    away = z != 0  # the kink: either one-sided derivative is right there
    assert drawn.f.shape == (1, len(z))
    assert drawn.f[0] == pytest.approx(np.where(z >= 0, z, 0.3 * z), abs=1e-12)
    assert drawn.df[0][away] == pytest.approx(np.where(z > 0, 1.0, 0.3)[away], abs=1e-12)


def test_a_per_unit_shape_has_one_row_per_unit_each_the_modules_own_curve():
    from harness.networks.gated import set_units
    from harness.report.learnt_gallery import Z, shape

    torch.manual_seed(0)
    act = make_activation("spline").double()
    set_units(act, 5)
    with torch.no_grad():
        for p in act.parameters():
            p.add_(0.3 * torch.randn_like(p))  # the units differ from one another
    holder = nn.Module()
    holder.hidden = nn.ModuleList([nn.Module()])
    holder.hidden[0].act = act
    drawn = shape("spline", {}, learnt.activation_parameters(holder)["hidden.0"])
    x = Z[:, None].expand(len(Z), 5).clone().requires_grad_(True)
    f = act(x)  # the reference: the trained module itself, each column one unit
    (df,) = torch.autograd.grad(f.sum(), x)
    assert drawn.f.shape == (5, len(Z))
    assert drawn.f == pytest.approx(f.detach().T.numpy(), abs=1e-12)
    assert drawn.df == pytest.approx(df.T.numpy(), abs=1e-12)
    assert np.ptp(drawn.f[:, -1]) > 1e-3  # per-unit indeed: the band has a width


@pytest.mark.parametrize("draw", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["panels", "figure"])
def test_the_report_figure_of_learnt_shapes_is_drawn_from_the_runs(tiny, tmp_path, draw):
    import pandas as pd

    from harness.report.learnt_gallery import learnt_job, panels
    from tests.test_bench import assert_drawn

    dirs = [tmp_path / "a", tmp_path / "b", tmp_path / "relu"]
    for d, overrides in zip(dirs, [["activation=prelu", "seed=1"], ["activation=prelu", "seed=2"], []]):
        assert run(tiny(*overrides, "trainer.steps=4", "model.width=8"), d)["status"] == "ok"
    tuned = pd.DataFrame({"act": ["prelu", "prelu", "relu"], "task": ["t"] * 3, "run_dir": [str(d) for d in dirs]})
    items = [("prelu", "prelu", {}), ("relu", "relu", {})]
    job = learnt_job(items, tuned, {})
    assert job is not None and learnt_job(items[1:], tuned, {}) is None  # relu has nothing to draw
    rows = panels(items, [("prelu", "t", run_summary(d)) for d in dirs[:2]])
    assert [[p.title for p in r] for r in rows] == [["prelu, t, hidden.0", "prelu, t, hidden.1"]]
    assert len(rows[0][0].final) == 2  # one curve per run
    if draw:
        assert_drawn(job(tmp_path / "learnt_shapes.png"))


def run_summary(run_dir):
    from harness.records.results import read_summary

    return read_summary(run_dir)
