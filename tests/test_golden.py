"""Golden fixed-seed runs: the refactored core must reproduce today's numbers bitwise on the CPU.

tests/golden/runs.json holds, for each case below, the summary's numeric keys and every metrics.csv line, as
produced by the code before the core refactor of 2026-11. Regenerate only for an intended change of numbers:
    python -m tests.test_golden --regenerate [CASE ...]   (named cases only; the others are kept as they are)

Bitwise holds between CPUs with the same vector instructions only: torch's and numpy's kernels round differently
in the last bits on AVX2 than on AVX512 (MNIST-1D and spirals are generated with numpy), and a few training steps
grow that to percent-level differences; so do two CPUs of one capability from different vendors (an AMD EPYC VM
with AVX512 differs from runs.json in 16 of 51 lines of mlp_relu_mnist1d, at the commit that last wrote it too).
So each CPU kind has its own file (golden_candidates): runs.json is AVX512's, from the code before the refactor;
runs.AVX2.json was made on an AVX2 machine (an AMD EPYC VM) by --regenerate from the code of that day;
runs.AVX512.AuthenticAMD.json on an AVX512 AMD EPYC VM on 2026-12-05 (which the code of before harness/ became
packages reproduces bit for bit too). Each pins its numbers since; --regenerate writes this CPU's own file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.common import metrics
from harness.setup.config import Config, config_hash


def cpu_vendor() -> str:
    """The CPU's vendor id (AuthenticAMD, GenuineIntel) from /proc/cpuinfo; platform.processor() elsewhere."""
    import platform

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":")[1].strip() for line in lines if line.startswith("vendor_id"))
    except (OSError, StopIteration):
        return platform.processor().replace(" ", "_") or "unknown"


def golden_candidates() -> list[Path]:
    """This CPU's golden files, most specific first: runs.CAPABILITY.VENDOR.json (an AMD and an Intel CPU of one
    capability round apart: BLAS takes a different path by vendor), runs.CAPABILITY.json, and for AVX512 runs.json
    (the first goldens, made before the core refactor on an AVX512 machine)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    folder = Path(__file__).parent / "golden"
    names = [f"runs.{capability}.{cpu_vendor()}.json", f"runs.{capability}.json"]
    return [folder / name for name in names + (["runs.json"] if capability == "AVX512" else [])]


def golden_file() -> Path:
    """The golden runs this CPU is held to: the most specific of its files that exists (the first name if none)."""
    return next((path for path in golden_candidates() if path.exists()), golden_candidates()[0])


GOLDEN = golden_file()
HASHES = Path(__file__).parent / "golden" / "config_hashes.json"
BASE = [
    "trainer.steps=20",
    "trainer.eval_every=10",
    "trainer.log_every=10",
    "trainer.progress=false",
    "dataset.train_size=200",
    "trainer.device=cpu",
    "trainer.threads=1",
    "seed=1",
]
CASES = {
    "mlp_relu_mnist1d": [],
    "mlp_residual_batchnorm_gelu_spirals": [
        "dataset=spirals",
        "model.residual=true",
        "model.norm=batch",
        "model.depth=3",
        "model.width=16",
        "activation=gelu",
    ],
    "mlp_layernorm_kaiming_rrelu": ["activation=rrelu", "model.norm=layer", "model.init=kaiming"],
    "mlp_prelu_sgd_clip": ["activation=prelu", "trainer.optimizer=sgd", "trainer.lr=0.1", "trainer.grad_clip=1.0"],
    "cnn_tanh_digits_orthogonal": [
        "model=cnn",
        "dataset=digits",
        "activation=tanh",
        "model.depth=2",
        "model.width=8",
        "model.kernel_size=3",
        "model.init=orthogonal",
    ],
    "cnn_prelu_mnist1d": [
        "model=cnn",
        "activation=prelu",
        "model.width=8",
        "trainer.optimizer=adamw",
        "trainer.weight_decay=0.01",
        "trainer.activation_decay=true",  # as the golden run was made: PReLU's slope decayed too (docs/activations.md)
    ],
    "rnn_elman_tanh_digits": [
        "model=rnn",
        "dataset=digits",
        "model.cell=elman",
        "model.bidirectional=false",
        "activation=tanh",
        "model.width=8",
    ],
    "rnn_gru_bidirectional_mnist1d": ["model=rnn", "model.cell=gru", "model.bidirectional=true", "model.width=6"],
    "rnn_lstm_bidirectional_digits_xavier": [
        "model=rnn",
        "dataset=digits",
        "model.cell=lstm",
        "model.depth=2",
        "model.bidirectional=true",
        "model.width=5",
        "model.init=xavier",
        "activation=leaky_relu",
        "activation.negative_slope=0.2",
    ],
    "mlp_diverges": ["trainer.optimizer=sgd", "trainer.lr=1e12", "trainer.steps=30"],
    "born_dead_trials": [
        "trainer.steps=0",
        "trainer.init_trials=25",
        "model.depth=8",
        "model.width=3",
        "dataset=spirals",
    ],
}
# Timings, hosts and versions differ from run to run; everything else a run records must not.
VOLATILE = {
    "train_time_s",
    "loop_time_s",
    "samples_per_s",
    "train_cpu_time_s",
    "clock_samples_per_s",
    "peak_mem_mb",
    "pid",
    "started_at",
    "finished_at",
    "run_dir",
    "hostname",
    "git_sha",
    "git_dirty",
    "package_versions",
    "torch_version",
    "device_name",
    "config",
    "num_threads",
    "files",  # files: metrics.csv's size and checksum, compared line by line below
    "config_hash",
}  # pinned by the test below (trainer.threads is watch-only: hashed at its v1 default, HASHED_AT_DEFAULT)
# Summary keys added after the golden runs were written: new keys, so no number changed (besides the metric
# registry's, harness.common.metrics, which the test below allows as they come).
ADDED_SUMMARY_KEYS = {
    "width_used",
    "dead_fraction_init_by_layer",
    "lost_fraction_by_layer",
    "grad_flow_ratio_init",
    "grad_flow_ratio",
    "val_drawdown_max",
    "n_test",
    "init_used",
    "group",  # {id, size, index}
    "speed_clock",
    "zero_fraction_by_layer",  # activation sparsity (harness.networks.sparsity); overall: the metric registry's
    "small_fraction_by_layer",
    "cett_sparsity_by_layer",
    "activation_params_init",  # the learnt shape of the activation (harness.networks.learnt); {} without parameters
    "activation_params_final",
}
# metrics.csv metrics added after the golden runs were written: new rows, every other line unchanged
ADDED_METRICS = {"zero_fraction", "small_fraction", "cett_sparsity"}
# config_hash of configs whose hash is pinned: changing any of them breaks the resume of existing sweeps.
HASHED = {
    "default": [],
    "cnn_digits": ["model=cnn", "dataset=digits"],
    "rnn_lstm_prelu": ["model=rnn", "model.cell=lstm", "activation=prelu", "trainer.lr=3e-3"],
    "custom": ["activation=custom", "activation.target=torch.nn.Tanh"],
}


def golden_run(overrides: list[str], root: str, run_dir: Path) -> dict:
    from harness import run
    from tests.conftest import compose_config

    run(compose_config(*BASE, f"dataset.root={root}", *overrides), run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] != "failed", summary["error"]
    return {
        "summary": {k: v for k, v in summary.items() if k not in VOLATILE},
        "metrics": (run_dir / "metrics.csv").read_text().splitlines(),
    }


def pinned_hashes() -> dict[str, str]:
    from tests.conftest import compose_config

    hashes = {name: config_hash(compose_config(*overrides)) for name, overrides in HASHED.items()}
    return {**hashes, "dataclass_default": config_hash(Config())}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_run_is_reproduced_bitwise(case, data_root, tmp_path):
    if not GOLDEN.exists():
        pytest.skip(f"no golden runs for this CPU ({GOLDEN.name}): python -m tests.test_golden --regenerate")
    expected = json.loads(GOLDEN.read_text())[case]
    got = golden_run(CASES[case], data_root, tmp_path / case)
    added = (ADDED_SUMMARY_KEYS | set(metrics.stored())) - set(expected["summary"])  # a metric newer than the file
    assert {k: v for k, v in got["summary"].items() if k not in added} == expected["summary"]
    assert [line for line in got["metrics"] if line.split(",")[2] not in ADDED_METRICS] == expected["metrics"]


def test_config_hash_of_existing_configs_is_unchanged():
    assert pinned_hashes() == json.loads(HASHES.read_text())


if __name__ == "__main__" and "--regenerate" in sys.argv:
    import tempfile

    import torch

    torch.set_num_threads(1)
    named = sys.argv[sys.argv.index("--regenerate") + 1 :] or sorted(CASES)
    own = golden_candidates()[0]  # this CPU's own file: made here, never a fallback's numbers rewritten
    runs = json.loads(own.read_text()) if own.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        runs.update({case: golden_run(CASES[case], tmp, Path(tmp) / case) for case in named})
    own.write_text(json.dumps(runs, separators=(",", ":"), sort_keys=True) + "\n")
    HASHES.write_text(json.dumps(pinned_hashes(), indent=1, sort_keys=True) + "\n")
