"""The benchmarks: helpers against hand counts, and both scripts end to end in a tiny configuration."""

from __future__ import annotations

import csv
import math
import threading
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from harness.training.bench import bf16_error, cpu_clock, quartiles, saved_bytes, time_blocks, training_saved_bytes
from harness.training.meters import Timer
from scripts import bench_busy, bench_grouped, bench_overhead, microbench, plain_stacked

# Tests that read a clock run alone (pytest.mark.serial); those that run a benchmark check its output's form only.

N = 1000  # elements of the hand-counted tensors


def leaf(dtype=torch.float32) -> torch.Tensor:
    return torch.randn(N, dtype=dtype).requires_grad_()


def test_saved_bytes_match_a_hand_count():
    assert saved_bytes(nn.ReLU(), leaf()) == 4 * N  # its output
    assert saved_bytes(nn.GELU(), leaf()) == 4 * N  # its input
    assert saved_bytes(nn.ReLU(), leaf(torch.bfloat16)) == 2 * N
    assert saved_bytes(nn.RReLU(), leaf()) == 8 * N  # training mode: the input and the random slopes
    # in place on a non-leaf: the result, which is the input's storage, once
    assert saved_bytes(lambda x: nn.ReLU(inplace=True)(x.clone()), leaf()) == 4 * N
    # a hand-written SiLU keeps x and sigmoid(x); sigmoid's own saved output is that same tensor, counted once
    assert saved_bytes(lambda x: x * torch.sigmoid(x), leaf()) == 8 * N
    assert saved_bytes(lambda x: x + 1, leaf()) == 0


def test_training_saved_bytes_counts_what_each_ffn_activation_adds():
    """Against the FFN's size: ReLU's output is saved once (the next Linear needs it too); GELU also keeps its
    input, which adds exactly depth x batch x tokens x d_ff floats to the step's total."""
    from harness.networks.models import Transformer

    batch, tokens, d_ff, depth = 6, 10, 12, 2
    x, y = torch.randn(batch, 1, 40), torch.randint(0, 10, (batch,))
    totals = {}
    for name, act in (("relu", nn.ReLU), ("gelu", nn.GELU)):
        torch.manual_seed(0)
        totals[name], inside = training_saved_bytes(Transformer((1, 40), 10, act, depth, 8, 2, d_ff, 4), x, y)
        assert inside == 4 * depth * batch * tokens * d_ff  # ReLU: its output; GELU: its input
    assert totals["gelu"] - totals["relu"] == 4 * depth * batch * tokens * d_ff


def test_bf16_error_is_zero_for_relu_and_small_for_tanh():
    x = 3 * torch.randn(4096)
    assert bf16_error(nn.ReLU(), x)["bf16_max_abs_err"] == 0
    tanh = bf16_error(nn.Tanh(), x)
    assert 0 < tanh["bf16_rel_rms_err"] < 1e-2
    assert tanh["bf16_rounding_rel_rms_err"] <= tanh["bf16_rel_rms_err"] * 1.5  # the floor is of the same order
    prelu = nn.PReLU()
    bf16_error(prelu, x)
    assert prelu.weight.dtype == torch.float32  # the module comes back as it went in


@pytest.mark.serial
def test_time_blocks_runs_setup_outside_each_block_and_discards_warmup():
    calls = []

    def block(state):  # a block of known length, by either clock: 20 ms of this thread's CPU time
        calls.append(state)
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass

    times = time_blocks(
        block, torch.device("cpu"), repeats=4, warmup=2, setup=lambda: (time.sleep(0.05), len(calls))[1]
    )
    assert calls == list(range(6)) and len(times) == 4
    assert all(0.02 <= t < 0.05 for t in times), times  # the block, and none of setup's sleep
    assert quartiles([1.0, 2.0, 3.0, 4.0, 100.0])[1] == 3.0


def tiny_microbench(activations: str, out) -> list[str]:
    """microbench's arguments for a quick CPU run of these activations, writing into out."""
    return ["--activations", activations, "--device", "cpu", "--dtype", "float32", "--sizes", "4k", "--repeats", "2",
            "--modes", "eager", "--threads", "1", "--out", str(out)]  # fmt: skip


def test_microbench_writes_well_formed_csv_table_and_figures(tmp_path, capsys):
    argv = tiny_microbench("gelu,relu", tmp_path)
    assert microbench.main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "microbench.csv")))
    # relu: out-of-place and in-place, gelu: out-of-place only; each forward and forward+backward
    assert sorted((r["activation"], r["placement"], r["pass"]) for r in rows) == [
        ("gelu", "out", "fwd"),
        ("gelu", "out", "fwd+bwd"),
        ("relu", "in", "fwd"),
        ("relu", "in", "fwd+bwd"),
        ("relu", "out", "fwd"),
        ("relu", "out", "fwd+bwd"),
    ]
    for r in rows:
        assert r["device"] == "cpu" and r["threads"] == "1" and int(r["size"]) == 4096
        for key in ("median_us", "elements_per_s", "gb_per_s", "copy_gb_per_s", "copy_fraction"):
            assert math.isfinite(float(r[key])) and float(r[key]) > 0
        assert float(r["p25_us"]) <= float(r["median_us"]) <= float(r["p75_us"])
        assert float(r["saved_bytes_per_element"]) == 4.0  # ReLU its output, GELU its input: one fp32 each
    assert {float(r["vs_relu"]) for r in rows if r["activation"] == "relu"} == {1.0}
    table = (tmp_path / "microbench.md").read_text()
    assert "| gelu | fwd+bwd |" in table and "1 threads" in table and "copy bandwidth" in table
    assert table in capsys.readouterr().out
    for name in ("microbench_copy_fraction.png", "microbench_vs_relu.png"):
        assert_drawn(tmp_path / name)


def assert_drawn(path) -> None:
    """A real figure: a PNG that reads back, of figure size, with more than a blank canvas on it."""
    image = plt.imread(path)
    height, width = image.shape[:2]
    assert height > 200 and width > 300
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10  # axes, text and bars, not one colour


def test_microbench_counts_a_gated_op_as_reading_2n_and_writing_n(tmp_path):
    argv = tiny_microbench("swiglu", tmp_path)
    assert microbench.main(argv) == 0
    rows = [r for r in csv.DictReader(open(tmp_path / "microbench.csv")) if r["activation"] == "swiglu"]
    assert sorted((r["placement"], r["pass"]) for r in rows) == [("out", "fwd"), ("out", "fwd+bwd")]
    for r in rows:
        traffic = {"fwd": 1.5, "fwd+bwd": 4}[r["pass"]]  # (2n + n) / 2n; (2n + n + n + 2n + 2n) / 2n
        assert float(r["gb_per_s"]) == pytest.approx(traffic * 4096 * 4 / (float(r["median_us"]) * 1e3))
        assert float(r["outputs_per_input"]) == 0.5
        assert float(r["saved_bytes_per_element"]) == 6.0  # u, g and silu(g): 3n fp32 over 2n inputs
    table = (tmp_path / "microbench.md").read_text()
    assert "| swiglu (2n->n) | fwd+bwd |" in table and "read 2n elements and write n" in table
    assert "| relu | fwd |" in table


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--activations", "relu,nope"], "unknown activation 'nope'"),
        (["--device", "tpu"], "--device must be auto, cpu or cuda"),
        (["--dtype", "float8"], "unknown dtype"),
        (["--sizes", "12q"], "bad size"),
    ],
)
def test_microbench_refuses_bad_input_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        microbench.parse_args(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_overhead_benchmark_prints_both_ratios_and_writes_csv(data_root, tmp_path, capsys):
    argv = [
        "--models",
        "mlp",
        "--steps",
        "30",
        "--repeats",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--clock",
        "cpu",
        "--out",
        str(tmp_path),
        f"dataset.root={data_root}",
        "dataset.train_size=300",
        "trainer.log_every=10",
        "trainer.eval_every=10",
    ]
    assert bench_overhead.main(argv) == 0
    out = capsys.readouterr().out
    assert "cpu clock" in out and "| mlp | off |" in out and "| mlp | on |" in out
    rows = list(csv.DictReader(open(tmp_path / "overhead.csv")))
    assert [r["probes"] for r in rows] == ["off", "on"]
    for r in rows:
        for key in ("plain_samples_per_s", "harness_samples_per_s", "step_ratio", "wall_ratio"):
            assert 0 < float(r[key]) < math.inf
        assert float(r["step_ratio"]) == pytest.approx(
            float(r["harness_samples_per_s"]) / float(r["plain_samples_per_s"])
        )
        assert float(r["wall_ratio"]) == pytest.approx(float(r["plain_wall_s"]) / float(r["harness_loop_s"]))
        assert r["threads"] == "1" and r["clock"] == "cpu" and r["model"] == "mlp"


def test_overhead_benchmark_refuses_bad_input_in_one_line(capsys):
    for argv in (["--models", "mlp,transformer"], ["--device", "tpu"], ["--clock", "cpu", "--threads", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_overhead.parse_args(argv)
        assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_overhead_benchmark_defaults_to_one_thread_and_its_cpu_clock():
    args = bench_overhead.parse_args([])
    assert (args.threads, args.clock, args.repeats) == (1, "cpu", 3)
    assert bench_overhead.parse_args(["--threads", "2"]).clock == "wall"


def test_cpu_clock_times_only_this_threads_timers_and_only_inside_its_block():
    """A Timer made inside cpu_clock() does not count a sleep (CPU time); one made before the block, after it, or
    by another thread meanwhile counts it (wall time); leaving a nested block keeps the outer block's clock."""
    nap, cpu = 0.05, torch.device("cpu")

    def napped(timer: Timer) -> float:
        timer.start()
        time.sleep(nap)
        return timer.stop()

    before = Timer(cpu)
    other_thread = {}
    with cpu_clock():
        inside = Timer(cpu)
        neighbour = threading.Thread(target=lambda: other_thread.setdefault("total", napped(Timer(cpu))))
        neighbour.start()
        neighbour.join()
        with cpu_clock():
            pass
        after_nested = Timer(cpu)
        assert napped(before) >= nap
        assert napped(inside) < nap / 2 and napped(after_nested) < nap / 2
    assert other_thread["total"] >= nap
    assert napped(Timer(cpu)) >= nap


@pytest.mark.slow  # four `python run.py` subprocesses, about 15 s; its form only, so not alone (serial)
def test_busy_benchmark_prints_the_ratio_beside_a_spinning_neighbour(data_root, capsys):
    assert (
        bench_busy.main(["--repeats", "1", "trainer.steps=50", f"dataset.root={data_root}", "dataset.train_size=300"])
        == 0
    )
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| auto |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1" and 0 < float(cells[4]) < 10  # auto trains the default MLP on one thread


def test_busy_benchmark_refuses_bad_input_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_busy.main(["--repeats", "0"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.serial
def test_time_blocks_on_one_cpu_thread_read_its_cpu_time_not_the_wall():
    # conftest keeps torch at one thread: a block that only waits costs no CPU time
    import time

    times = time_blocks(lambda state: time.sleep(0.02), torch.device("cpu"), repeats=2, warmup=0)
    assert max(times) < 0.005


def test_the_plain_stacked_loop_is_k_torch_mlps_side_by_side():
    """scripts/plain_stacked.py, the limit bench_grouped names: member i's slice of the stacked forward is an
    nn.Sequential of Linear and ReLU holding member i's weights."""
    params = plain_stacked.stacked_mlp(3, [5, 7, 7, 4], torch.device("cpu"))
    x = torch.randn(3, 6, 5)
    stacked = plain_stacked.forward(params, x)
    for i in range(3):
        layers = []
        for w, b in zip(params[::2], params[1::2]):
            linear = torch.nn.Linear(*w.shape[1:])
            with torch.no_grad():
                linear.weight.copy_(w[i].T)
                linear.bias.copy_(b[i, 0])
            layers += [linear, torch.nn.ReLU()]
        torch.testing.assert_close(stacked[i], torch.nn.Sequential(*layers[:-1])(x[i]))
    result = plain_stacked.train(2, 5, n=300, features=5, width=7, batch=10)
    assert result["k"] == 2 and result["samples_per_s"] > 0 and math.isfinite(result["loss"])


def test_the_grouped_benchmark_prints_the_harness_beside_the_plain_stacked_loop(data_root, capsys):
    bench_grouped.main(
        [
            "--models",
            "mlp",
            "--seeds",
            "2",
            "--ks",
            "1",
            "2",
            "--steps",
            "20",
            f"dataset.root={data_root}",
            "dataset.train_size=300",
            "trainer.eval_every=10",
            "trainer.log_every=10",
        ]
    )
    out = capsys.readouterr().out
    assert "the limit: the default MLP" in out and "harness/plain" in out
    row = next(line for line in out.splitlines() if line.startswith("mlp "))
    assert float(row.split()[3].rstrip("x")) > 0  # one by one / grouped, start-up included
    goals = out[out.index("goal") :].splitlines()[1:]
    assert [g.split(",")[0] for g in goals] == [
        "sweep mlp",
        "harness/plain",
        "harness/plain",
        "2 members' time / one run's",
    ]
    assert all(g.split()[-1] in ("yes", "NO") for g in goals)
