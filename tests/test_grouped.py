"""Grouped runs (harness.training.group): every member records what its one-job twin (train.run) records.

In float64 the twins agree to 1e-9 relative on every metrics.csv value and every numeric summary key; in float32
a member's records do not depend on the size or composition of its group (CPU, one thread).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats
import torch

from harness.networks import stacked, stacked_layers
from harness.networks.models import MLP
from harness.setup.config import ConfigError
from harness.training import group
from harness.training.train import run, run_group
from tests.test_golden import VOLATILE

RTOL, ATOL = 1e-9, 1e-12
STEPS = [
    "trainer.steps=100",
    "trainer.log_every=25",
    "trainer.eval_every=50",
    "dataset.train_size=200",
    "trainer.batch_size=20",
]
# seed, learning rate and weight decay differ within a group
MEMBERS = [["seed=1"], ["seed=2", "trainer.lr=0.003"], ["seed=3", "trainer.weight_decay=0.01"]]


def run_twins(tiny, tmp_path, common: list[str], members=MEMBERS, dtype=torch.float64) -> list[tuple[dict, dict]]:
    """Each member's (one-job summary, grouped summary), with its metrics.csv frame under "metrics"."""
    configs = [tiny(*STEPS, *common, *m) for m in members]
    one = [run(c, tmp_path / "one" / str(i), dtype=dtype) for i, c in enumerate(configs)]
    grouped = run_group(configs, [tmp_path / "group" / str(i) for i in range(len(configs))], members, "g", dtype)
    for s in one + grouped:
        assert s["status"] != "failed", s["error"]
        s["metrics"] = pd.read_csv(f"{s['run_dir']}/metrics.csv")
    return list(zip(one, grouped))


def close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)
    return a == b


def assert_twins(one: dict, grouped: dict) -> None:
    ma, mb = one.pop("metrics"), grouped.pop("metrics")
    assert ma[["step", "split", "metric", "layer", "t"]].equals(mb[["step", "split", "metric", "layer", "t"]])
    assert close(ma["value"].tolist(), mb["value"].tolist()), (ma[ma.value != mb.value], mb[ma.value != mb.value])
    skip = VOLATILE | {"run_dir", "group", "overrides"}
    a, b = ({k: v for k, v in s.items() if k not in skip} for s in (one, grouped))
    assert a.keys() == b.keys()
    bad = [k for k in a if not close(a[k], b[k])]
    assert not bad, {k: (a[k], b[k]) for k in bad}


CASES = {  # (extra overrides, slow)
    "mlp": ([], False),
    "mlp_residual_layernorm_prelu": (["model.residual=true", "model.norm=layer", "activation=prelu"], True),
    # batch norm with SGD: a bias before a norm has a zero gradient up to rounding, which Adam would scale up to
    # lr-sized steps of rounding noise (it moves the running mean: 7e-9 apart after 100 steps), SGD does not
    "mlp_residual_batchnorm_softmax_clip": (
        [
            "model.residual=true",
            "model.norm=batch",
            "activation=softmax",
            "trainer.optimizer=sgd",
            "trainer.lr=0.1",
            "trainer.grad_clip=0.5",
        ],
        True,
    ),
    "mlp_glu": (["activation=glu", "model.width=8"], True),
    "mlp_star_relu_layernorm": (["activation=star_relu", "model.norm=layer", "model.width=8"], True),
    "cnn_1d": (["model=cnn", "model.width=6"], False),
    "cnn_1d_swiglu": (["model=cnn", "model.width=6", "activation=swiglu"], True),
    "cnn_2d_batchnorm_prelu": (
        [
            "model=cnn",
            "dataset=digits",
            "model.width=6",
            "model.norm=batch",
            "activation=prelu",
            "trainer.optimizer=sgd",
            "trainer.lr=0.05",
        ],
        True,
    ),
    "cnn_2d_layernorm": (
        [
            "model=cnn",
            "dataset=digits",
            "model.width=6",
            "model.norm=layer",
            "model.kernel_size=3",
            "trainer.optimizer=adamw",
        ],
        True,
    ),
    "rnn_gru_bidirectional": (["model=rnn", "model.width=4"], True),
    "rnn_gru_bidirectional_digits": (["model=rnn", "model.width=3", "dataset=digits"], False),  # a fast twin
    "rnn_elman": (
        [
            "model=rnn",
            "model.cell=elman",
            "model.bidirectional=false",
            "activation=tanh",
            "dataset=digits",
            "model.width=6",
        ],
        True,
    ),
    "rnn_lstm_bidirectional_prelu": (
        ["model=rnn", "model.cell=lstm", "model.depth=2", "model.width=4", "activation=prelu", "dataset=digits"],
        True,
    ),
    "transformer": (["model=transformer", "model.width=8", "model.ffn_ratio=2"], False),
    "transformer_swiglu_digits": (
        [
            "model=transformer",
            "model.width=8",
            "activation=swiglu",
            "dataset=digits",
            "model.patch=2",
            "model.match_params=true",
        ],
        True,
    ),
    "transformer_prelu_no_norm": (
        ["model=transformer", "model.width=8", "model.depth=1", "model.norm=none", "activation=prelu"],
        True,
    ),
    "transformer_softmax_sgd_clip": (
        [
            "model=transformer",
            "model.width=8",
            "activation=softmax",
            "trainer.optimizer=sgd",
            "trainer.lr=0.1",
            "trainer.grad_clip=0.5",
        ],
        True,
    ),
    # 2023-2026: each member trains its own activation parameters (tests/test_stacked_model.py has them all, fast)
    "mlp_spline_matched": (["activation=spline", "model.width=8", "model.match_params=true"], True),
    "mlp_xielu": (["activation=xielu", "model.width=8"], True),
    "cnn_1d_polynorm": (["model=cnn", "model.width=6", "activation=polynorm"], True),
    "cnn_1d_drelu": (["model=cnn", "model.width=6", "activation=drelu"], True),
    "rnn_gru_rational": (["model=rnn", "model.width=3", "dataset=digits", "activation=rational"], True),
    "transformer_polyrelu": (["model=transformer", "model.width=8", "model.ffn_ratio=2", "activation=polyrelu"], True),
}


@pytest.mark.parametrize(
    "case", [pytest.param(k, marks=[pytest.mark.slow] if slow else []) for k, (_, slow) in CASES.items()]
)
def test_members_equal_their_one_job_twins_float64(tiny, tmp_path, case):
    for one, grouped in run_twins(tiny, tmp_path, CASES[case][0]):
        assert_twins(one, grouped)
        assert grouped["group"]["size"] == 3


def test_a_diverging_member_is_frozen_and_the_others_finish(tiny, tmp_path):
    members = [["seed=1"], ["seed=2", "trainer.lr=1e12"], ["seed=3", "trainer.lr=0.05"]]
    twins = run_twins(tiny, tmp_path, ["trainer.optimizer=sgd", "trainer.lr=0.1"], members)
    assert [g["status"] for _, g in twins] == ["ok", "diverged", "ok"]
    assert twins[1][1]["diverged_at_step"] < 25  # diverged in the first window, frozen there
    for one, grouped in twins:
        assert_twins(one, grouped)


def test_a_group_whose_members_all_diverge_records_them_all(tiny, tmp_path):
    configs = [tiny("trainer.optimizer=sgd", "trainer.lr=1e12", "trainer.steps=30", f"seed={s}") for s in (1, 2)]
    summaries = run_group(configs, [tmp_path / "a", tmp_path / "b"], [[], []], "g")
    assert [s["status"] for s in summaries] == ["diverged", "diverged"]


def records(summary: dict) -> tuple:
    skip = VOLATILE | {"run_dir", "group", "overrides"}
    return {k: v for k, v in summary.items() if k not in skip}, open(f"{summary['run_dir']}/metrics.csv").read()


@pytest.mark.parametrize("model", ["mlp", "transformer"])
def test_float32_member_does_not_depend_on_its_group(tiny, tmp_path, model):
    """One thread, CPU: seed 1 beside one member, and beside two others, records the same bits. (A group of one
    trains its model's own modules, nn.Linear's kernels; the CNN's and RNN's kernels round by group size, by at
    most the bounds tests/test_stacked_model.py holds: docs/grouped.md.)"""
    patch = ["model.patch=2"] if model == "transformer" else []
    common = [
        f"model={model}",
        "dataset=digits",
        "model.width=4",
        *patch,
        "trainer.steps=30",
        "trainer.log_every=10",
        "trainer.eval_every=15",
    ]
    member = tiny(*common, "seed=1")
    others = [tiny(*common, "seed=5", "trainer.lr=0.003"), tiny(*common, "seed=6"), tiny(*common, "seed=7")]
    pair = run_group([member, others[0]], [tmp_path / f"pair{i}" for i in range(2)], [[]] * 2, "a")
    trio = run_group([others[1], member, others[2]], [tmp_path / f"trio{i}" for i in range(3)], [[]] * 3, "b")
    assert records(pair[0]) == records(trio[1])
    assert records(pair[0]) != records(trio[0])  # the comparison can tell members apart


def test_group_summary_and_folders(tiny, tmp_path):
    configs = [tiny("trainer.steps=10", "trainer.log_every=5", f"seed={s}") for s in (1, 2)]
    summaries = run_group(configs, [tmp_path / "a", tmp_path / "b"], [["seed=1"], ["seed=2"]], "g7")
    assert [s["group"] for s in summaries] == [{"id": "g7", "size": 2, "index": 0}, {"id": "g7", "size": 2, "index": 1}]
    on_disk = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert on_disk["seed"] == 2 and on_disk["overrides"] == ["seed=2"] and on_disk["status"] == "ok"
    assert on_disk["samples_per_s"] > 0
    # one thread: the group's thread CPU time, over the same segments as its wall clock
    assert on_disk["speed_clock"] == "thread_cpu" and 0 < on_disk["train_cpu_time_s"] <= 1.05 * on_disk["train_time_s"]
    assert on_disk["clock_samples_per_s"] > 0


def test_a_member_that_raises_fails_the_group(tiny, tmp_path, monkeypatch):
    configs = [tiny("trainer.steps=10", f"seed={s}") for s in (1, 2)]
    monkeypatch.setattr(stacked_layers, "FORWARDS", {})  # every stacked forward raises KeyError
    summaries = run_group(configs, [tmp_path / "a", tmp_path / "b"], [[], []], "g")
    assert [s["status"] for s in summaries] == ["failed", "failed"]
    assert all("KeyError" in s["error"] for s in summaries)


def test_rrelu_noise_in_a_stack_is_uniform_and_independent():
    """RReLU's train-mode slopes in the stacked layout: U(lower, upper), one draw per element (member, sample,
    unit); the one-job run draws the same law from another stream, so grouped rrelu runs match only in law."""
    act = torch.nn.RReLU()
    torch.manual_seed(0)
    z = -torch.ones(3, 200, 50, dtype=torch.float64)  # (K, B, units)
    slopes = -stacked_layers.activation(z, act, 0, 2)
    ks = scipy.stats.kstest(slopes.flatten().numpy(), scipy.stats.uniform(act.lower, act.upper - act.lower).cdf)
    assert ks.pvalue > 1e-3
    members = slopes.flatten(1)
    assert abs(torch.corrcoef(members)[0, 1]) < 0.05  # members draw independently of each other


@pytest.mark.parametrize(
    "member, message",
    [
        (["model.width=7"], "differ only in seed"),
        (["trainer.steps=0", "trainer.init_trials=3"], "init_trials"),
        (["trainer.compile=true"], "compile"),
        (["trainer.precision=fp16"], "fp16"),
        (["activation=custom", "activation.target=tests.test_grouped.Custom"], "elementwise"),
    ],
)
def test_run_group_refuses_what_cannot_be_grouped_before_loading_data(tiny, tmp_path, member, message):
    configs = [tiny("dataset.root=/nonexistent", *member), tiny("dataset.root=/nonexistent", "seed=4", *member)]
    if member == ["model.width=7"]:
        configs[1] = tiny("dataset.root=/nonexistent", "seed=4")
    with pytest.raises(ConfigError, match=message):
        run_group(configs, [tmp_path / "a", tmp_path / "b"], [[], []], "g")
    assert not (tmp_path / "a").exists()


def test_why_not_stacked_names_the_reason():
    assert stacked.why_not_stacked(torch.nn.PReLU()) is None
    assert stacked.why_not_stacked(torch.nn.GELU()) is None
    assert "dim 2" in stacked.why_not_stacked(torch.nn.Softmax(dim=2))
    assert "elementwise" in stacked.why_not_stacked(Custom())
    Custom.elementwise = True
    try:
        assert stacked.why_not_stacked(Custom()) is None
    finally:
        del Custom.elementwise


class Custom(torch.nn.Module):  # a user's own activation: stacked only if declared elementwise
    def forward(self, z):
        return z.clamp(-1, 1)


def test_stacked_forward_matches_each_member_on_its_own_batch():
    torch.manual_seed(0)
    models = [MLP(40, 10, torch.nn.PReLU, 2, 16, True, "layer").double() for _ in range(3)]
    for i, m in enumerate(models):
        m.hidden[1].act.weight.data.fill_(0.1 * i)  # members' slopes differ
    xs = [torch.randn(8, 1, 40, dtype=torch.float64) for _ in models]
    alone = torch.stack([m(x) for m, x in zip(models, xs)])
    logits, _ = stacked.StackedModel(models).forward(torch.stack(xs))
    torch.testing.assert_close(logits, alone, rtol=1e-12, atol=1e-12)


@pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)
@pytest.mark.parametrize("case", ["mlp", "cnn_1d", "rnn_gru_bidirectional_digits"])
def test_members_equal_their_one_job_twins_float64_on_cuda(tiny, tmp_path, case):
    for one, grouped in run_twins(tiny, tmp_path, [*CASES[case][0], "trainer.device=cuda"]):
        assert_twins(one, grouped)


def test_group_checkpoints_resume_one_by_one_or_in_another_group(tiny, tmp_path, monkeypatch):
    """A group killed after its checkpoint: member a resumes as a single run, member b in a new group beside a
    fresh member c (b waits, its tensors untouched, until c reaches b's step 10); each then records what its
    uninterrupted single run records (float64)."""
    common = [
        *STEPS[3:],
        "trainer.steps=30",
        "trainer.log_every=10",
        "trainer.eval_every=10",
        "trainer.checkpoint_every=10",
    ]
    a, b, c = (tiny(*common, f"seed={s}", *lr) for s, lr in ((1, []), (2, ["trainer.lr=0.003"]), (3, [])))
    evaluate, calls = group.Group.evaluate, []

    def killed_at_20(self, split):
        calls.append(split)
        if calls.count("val") == 2:  # step 20's evaluation
            raise KeyboardInterrupt  # not an Exception: nothing is recorded, as when the job is killed
        return evaluate(self, split)

    monkeypatch.setattr(group.Group, "evaluate", killed_at_20)
    with pytest.raises(KeyboardInterrupt):
        run_group([a, b], [tmp_path / "a", tmp_path / "b"], [[], []], "g1", torch.float64)
    assert (tmp_path / "a" / "checkpoint.pt").exists() and (tmp_path / "b" / "checkpoint.pt").exists()
    monkeypatch.setattr(group.Group, "evaluate", evaluate)
    sizes, step = [], group.Group.step
    monkeypatch.setattr(
        group.Group, "step", lambda self, *args: sizes.append(int(self.active.sum())) or step(self, *args)
    )
    resumed = [
        run(a, tmp_path / "a", dtype=torch.float64),
        *run_group([b, c], [tmp_path / "b", tmp_path / "c"], [[], []], "g2", torch.float64),
    ]
    assert sizes == [1] * 20 + [1] * 10 + [2] * 20  # a from its step 10; then c alone until b's step 10, then both
    for config, summary in zip((a, b, c), resumed):
        twin = run(config, tmp_path / f"twin{config.seed}", dtype=torch.float64)
        for s in (summary, twin):
            assert s["status"] == "ok", s.get("error")
            s["metrics"] = pd.read_csv(f"{s['run_dir']}/metrics.csv")
        assert_twins(twin, summary)


def delete_folder(folder: Path) -> None:
    shutil.rmtree(folder)


def metrics_made_a_folder(folder: Path) -> None:
    (folder / "metrics.csv").unlink(missing_ok=True)
    (folder / "metrics.csv").mkdir()


@pytest.mark.parametrize(
    "harm, error", [(delete_folder, "FileNotFoundError"), (metrics_made_a_folder, "IsADirectoryError")]
)
def test_a_member_whose_folder_is_deleted_mid_group_fails_alone(tiny, tmp_path, monkeypatch, harm, error):
    """Deleting or damaging one member's folder while its group trains costs that member alone: the others finish
    with the records they would have had, and the member's folder keeps (or gets back) its failed record (resume
    reruns it). Through run_group_locked, as a sweep's group job runs it (locks, fault logs, .hydra files)."""
    from harness.sweeps.sweep import run_group_locked

    configs = [
        tiny(
            "trainer.steps=40",
            "trainer.log_every=10",
            "trainer.eval_every=20",
            "trainer.checkpoint_every=10",
            f"seed={s}",
        )
        for s in (1, 2, 3)
    ]
    dirs = [tmp_path / "sweep" / f"seed={s}" for s in (1, 2, 3)]
    real_save, harmed = group.save_checkpoint, []

    def save_after_the_user_deletes(path, *args):
        if Path(path).parent == dirs[1] and not harmed:
            harm(dirs[1])
            harmed.append(dirs[1])
        return real_save(path, *args)

    monkeypatch.setattr(group, "save_checkpoint", save_after_the_user_deletes)
    summaries = run_group_locked(configs, dirs, [[]] * 3, "g", [{"overrides.yaml": "[]\n"}] * 3)
    assert [s["status"] for s in summaries] == ["ok", "failed", "ok"]
    assert error in summaries[1]["error"]
    assert json.loads((dirs[1] / "summary.json").read_text())["status"] == "failed"
    monkeypatch.undo()
    calm = run_group(configs, [tmp_path / "calm" / f"seed={s}" for s in (1, 2, 3)], [[]] * 3, "h")
    for i in (0, 2):
        assert records(summaries[i]) == records(calm[i])
        assert (dirs[i] / ".hydra" / "overrides.yaml").is_file() and not (dirs[i] / "checkpoint.pt").exists()


def test_a_group_reads_what_its_members_share_once(tiny, tmp_path, monkeypatch):
    """Package versions and the git state are read once per process, not once per member (64 members paid 1 s)."""
    from harness.records import results

    results.package_versions.cache_clear()
    results.git_state.cache_clear()
    versions, gits = [], []
    real_version, real_run = results.metadata.version, results.subprocess.run
    monkeypatch.setattr(results.metadata, "version", lambda name: versions.append(name) or real_version(name))
    monkeypatch.setattr(results.subprocess, "run", lambda *a, **k: gits.append(a[0][0]) or real_run(*a, **k))
    configs = [tiny("trainer.steps=3", f"seed={s}") for s in (1, 2, 3)]
    summaries = run_group(configs, [tmp_path / str(s) for s in (1, 2, 3)], [[]] * 3, "g")
    assert len(versions) == len(results.PACKAGES) and gits.count("git") == 2
    first, last = summaries[0]["package_versions"], summaries[2]["package_versions"]
    assert first == last and first is not last  # each summary its own copy


@pytest.mark.parametrize("members", [2, 1])
def test_a_group_job_takes_its_launchers_share_of_the_cores(tiny, tmp_path, monkeypatch, members):
    """run_group_locked hands cpu_threads (the launcher's share, run.py's threads_per_job) to the group's loop, as
    run_locked does for a single job: a group under joblib must not take every core (nor one member left alone)."""
    from harness.sweeps.sweep import run_group_locked

    seen = []
    real = group.resolve_threads
    monkeypatch.setattr(group, "resolve_threads", lambda *a: seen.append(a[-1]) or real(*a))
    configs = [tiny("trainer.steps=2", "trainer.threads=auto", f"seed={s}") for s in range(members)]
    dirs = [tmp_path / f"seed={s}" for s in range(members)]
    summaries = run_group_locked(configs, dirs, [[]] * members, "g", [{}] * members, cpu_threads=1)
    assert [s["status"] for s in summaries] == ["ok"] * members
    assert seen == [1]
