"""Bad input gets one line and exit 2, before any data is loaded and with nothing written: one table, run in process
(`python run.py ARGS` as run.cli with a patched argv)."""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import stat
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from harness.setup import footprint
from hydra_plugins.harness_sweeper import preconditions
from tests.conftest import run_py_in_process

CHEAP = ["dataset=digits", "trainer.steps=0", "trainer.progress=false", "trainer.device=cpu", "trainer.threads=1"]


class RaisesInInit(torch.nn.Module):
    """A custom activation whose constructor fails."""

    def __init__(self):
        raise ValueError("this activation cannot be built")


class ExitsInInit(torch.nn.Module):
    """A custom activation whose constructor calls sys.exit."""

    def __init__(self):
        sys.exit(0)


class AbortsInInit(torch.nn.Module):
    """A custom activation whose constructor kills its process."""

    def __init__(self):
        os.abort()


# Setups: what a case needs of the machine, made in its folder (before the test looks at it) or patched in.


def read_only_folder(monkeypatch, tmp_path):
    """{tmp}/ro is 0o500, and os.access answers as a user who is not root would (root may write anywhere)."""
    (tmp_path / "ro").mkdir(mode=0o500)
    real_access = os.access
    monkeypatch.setattr(
        preconditions.os,
        "access",
        lambda path, mode: (
            real_access(path, mode) and not (mode & os.W_OK and not os.stat(path).st_mode & stat.S_IWUSR)
        ),
    )


def full_disk(monkeypatch, tmp_path):
    def no_space(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(preconditions.os, "write", no_space)


def no_network(monkeypatch, tmp_path):
    """torchvision's downloads fail as they do without a network, and quickly."""

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)


def corrupt_mnist(monkeypatch, tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]:
        (raw / name).write_bytes(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + bytes(100))
    (raw / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\xea")  # cut off in its header


def half_mnist(monkeypatch, tmp_path):
    """Two of MNIST's four files, as an interrupted copy leaves them; no network to fetch the rest."""
    corrupt_mnist(monkeypatch, tmp_path)
    for name in ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"]:
        (tmp_path / "data" / "MNIST" / "raw" / name).unlink()
    no_network(monkeypatch, tmp_path)


def no_sbatch(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


def no_submitit(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        preconditions.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "submitit" else real_find_spec(name, *args),
    )


def no_launcher_plugins(monkeypatch, tmp_path):
    """The README's install, without the launchers extra: neither Hydra launcher plugin importable."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        preconditions.importlib.util,
        "find_spec",
        lambda name, *args: None if name in preconditions.LAUNCHER_PLUGINS.values() else real_find_spec(name, *args),
    )


def fake_sbatch(monkeypatch, tmp_path):
    """An sbatch on PATH (never run: the case is refused before any job is submitted)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def one_gib_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(footprint, "available_memory", lambda: 2**30)


def sixteen_mib_machine(monkeypatch, tmp_path):
    """Room for the CNN's 1.2 M parameters (and their gradients), not for a batch of 1000 of its activations."""
    monkeypatch.setattr(footprint, "available_memory", lambda: 16 * 2**20)


# (case id, overrides, a fragment of the one line[, setup]); {file}: an existing file, {tmp}: this case's folder.
# Each runs with the case's folder as working directory, so that default folders would be written there.
CASES = [
    # Hydra's own multi-line messages, made one line naming the key and the valid choices
    ("unknown activation", ["activation=lrelu"], "Could not find 'activation/lrelu'; valid 'activation': "),
    ("unknown model", ["model=resnet"], "valid 'model': cnn, mlp, rnn, transformer"),
    ("unknown dataset", ["dataset=imagenet"], "valid 'dataset': cifar10, digits"),
    ("unknown experiment", ["+experiment=nosuch"], "valid 'experiment': article_claims"),
    ("unknown launcher", ["hydra/launcher=nosuch"], "find 'hydra/launcher/nosuch'; valid 'hydra/launcher': basic"),
    ("unknown launcher in a sweep", ["-m", "hydra/launcher=nosuch", "seed=0,1"], "valid 'hydra/launcher'"),
    ("float of the wrong type", ["trainer.lr=abc"], "trainer.lr=abc: Value 'abc' of type 'str' could not be"),
    ("int of the wrong type", ["trainer.steps=1.5"], "trainer.steps"),
    ("unknown key", ["nosuch=1"], "Key 'nosuch' not in 'Config'"),
    ("unknown nested key", ["model.nosuch=1"], "Key 'nosuch' not in 'ModelConfig'"),
    ("malformed override", ["=5"], "malformed override '=5'"),
    ("unparsable override", ["trainer.lr=[1"], "cannot parse override 'trainer.lr=[1'"),
    ("unbalanced quote", ["trainer.lr='1"], "cannot parse override"),
    ("a bad value in a sweep", ["-m", "trainer.lr=0.1,abc"], "trainer.lr=abc"),
    ("an unknown option in a sweep", ["-m", "activation=relu,lrelu"], "valid 'activation'"),
    # values
    ("negative learning rate", ["trainer.lr=-1"], "trainer.lr must be > 0"),
    ("negative steps", ["trainer.steps=-1"], "trainer.steps must be >= 0"),
    ("zero batch", ["trainer.batch_size=0"], "trainer.batch_size must be > 0"),
    ("zero eval_every", ["trainer.eval_every=0"], "trainer.eval_every must be > 0"),
    ("zero threads", ["trainer.threads=0"], "trainer.threads must be auto, a count > 0 or null, got 0"),
    ("unknown optimizer", ["trainer.optimizer=lbfgs"], "trainer.optimizer='lbfgs' is not valid"),
    ("unknown precision", ["trainer.precision=fp8"], "trainer.precision='fp8' is not valid"),
    ("unknown capture", ["trainer.capture=maybe"], "trainer.capture must be auto, true or false, got 'maybe'"),
    ("capture of fp16", ["trainer.capture=true", "trainer.precision=fp16"], "trainer.capture=true cannot capture"),
    ("unknown device", ["trainer.device=tpu"], "trainer.device='tpu' is not valid"),
    ("negative seed", ["seed=-1"], "seed must be in [0, 2**32 - 1]"),
    ("seed beyond 2**32", ["seed=4294967296"], "seed must be in [0, 2**32 - 1]"),
    ("negative SGD momentum", ["trainer.optimizer=sgd", "trainer.momentum=-0.5"], "trainer.momentum must be in [0, 1)"),
    ("negative weight decay", ["trainer.weight_decay=-1"], "trainer.weight_decay must be >= 0"),
    ("negative grad clip", ["trainer.grad_clip=-1"], "trainer.grad_clip must be > 0 or null"),
    ("init trials while training", ["trainer.init_trials=5", "trainer.steps=10"], "it needs trainer.steps=0"),
    ("unknown init", ["model.init=he"], "model.init='he' is not valid"),
    ("unknown cell", ["model=rnn", "model.cell=transformer"], "model.cell='transformer' is not valid"),
    ("cnn without layers", ["model=cnn", "model.depth=0"], "model.depth=0 is only valid for the mlp"),
    ("residual cnn", ["model=cnn", "model.residual=true"], "model.residual=true is only supported by the mlp"),
    ("gated activation in the rnn", ["model=rnn", "activation=glu"], "cannot replace tanh in the rnn"),
    ("negative depth", ["model.depth=-1"], "model.depth must be >= 0"),
    ("absurd width", ["model.width=1000000000"], "model.width must be <= 65536"),
    ("absurd depth", ["model.depth=100000"], "model.depth must be <= 1000"),
    (
        "kernel larger than the input",
        ["model=cnn", "model.kernel_size=41", "dataset=mnist1d"],
        "model.kernel_size=41 is larger than the input",
    ),
    ("norm on the rnn", ["model=rnn", "model.norm=batch"], "model.norm is not supported by the rnn"),
    (
        "patch that does not divide the input",
        ["model=transformer", "model.patch=3", "dataset=mnist1d"],
        "model.patch=3 does not divide the input (40)",
    ),
    (
        "patch that does not tile the image",
        ["model=transformer", "dataset=digits", "model.patch=5"],
        "model.patch=5 does not divide the input (8x8)",
    ),
    ("heads that do not divide d_model", ["model=transformer", "model.heads=5"], "model.heads=5 must divide"),
    ("an rnn option on the transformer", ["model=transformer", "model.bidirectional=true"], "are rnn options"),
    ("transformer on vectors", ["model=transformer", "dataset=spirals"], "model=transformer cannot take dataset"),
    ("model cannot take dataset", ["dataset=spirals", "model=cnn"], "model=cnn cannot take dataset=spirals"),
    ("validation fraction out of range", ["dataset.val_fraction=1.5"], "dataset.val_fraction must be in (0, 1)"),
    ("validation fraction leaves no training data", ["dataset.val_fraction=0.9999"], "leaves no training samples"),
    ("batch larger than the data", ["trainer.batch_size=5000"], "trainer.batch_size=5000 is larger than"),
    ("train_size larger than the data", ["dataset.train_size=5000"], "dataset.train_size=5000 is larger than"),
    # activations
    ("activation parameter unknown", ["+activation.slope=0.2"], "has no parameter slope"),
    (
        "activation parameter of the wrong type",
        ["activation=leaky_relu", "activation.negative_slope=abc"],
        "negative_slope",
    ),
    ("custom without a target", ["activation=custom"], "activation.target"),
    (
        "custom target not importable",
        ["activation=custom", "activation.target=torch.nn.NoSuch"],
        "cannot import activation.target='torch.nn.NoSuch'",
    ),
    ("custom target os.getcwd", ["activation=custom", "activation.target=os.getcwd"], "getcwd> returned a str"),
    ("custom target os.system", ["activation=custom", "activation.target=os.system"], "system() missing"),
    (
        "custom target whose constructor raises",
        ["activation=custom", "activation.target=tests.test_bad_input.RaisesInInit"],
        "this activation cannot be built",
    ),
    (
        "custom target whose constructor exits",
        ["activation=custom", "activation.target=tests.test_bad_input.ExitsInInit"],
        "SystemExit",
    ),
    (
        "custom target that exits, in a sweep",
        ["-m", "activation=custom", "activation.target=torch.nn.ReLU,tests.test_bad_input.ExitsInInit"],
        "SystemExit",
    ),
    # folders
    ("run dir is a file", ["hydra.run.dir={file}"], "is a file, not a folder"),
    ("sweep dir is a file", ["-m", "seed=0,1", "hydra.sweep.dir={file}"], "is a file, not a folder"),
    ("dataset root is a file", ["dataset=mnist1d", "dataset.root={file}"], "dataset.root={file} is a file"),
    ("dataset root under a file", ["dataset=mnist1d", "dataset.root={file}/data"], "is a file"),
    (
        "a job folder outside its sweep",
        ["-m", "activation=custom", "activation.target=torch.nn.Identity", "+activation.tag=x/../../../ESCAPED"],
        "would lie outside the sweep folder",
    ),
    (
        "a job folder name too long",
        ["-m", "activation=custom", "activation.target=torch.nn.Identity", "+activation.tag=" + "x" * 300],
        "longer than 255 bytes",
    ),
    # activation parameters outside their domain, found by running the activation on the model's own shapes
    ("softmax over a dim the input lacks", ["activation=softmax", "activation.dim=5"], "Dimension out of range"),
    ("softmax over the batch", ["activation=softmax", "activation.dim=0"], "activation.dim must be != 0"),
    (
        "rrelu lower above upper",
        ["activation=rrelu", "activation.lower=0.5", "activation.upper=0.1"],
        "Lower bound should be less than or equal to the upper bound",
    ),
    (
        "prelu slopes that do not match the width",
        ["activation=prelu", "activation.num_parameters=7"],
        "activation.num_parameters=7",
    ),
    (
        "prelu slopes that do not match the cnn's channels",
        ["activation=prelu", "activation.num_parameters=100", "model=cnn"],
        "channel size = 25",
    ),
    (
        "gelu approximation unknown",
        ["activation=gelu", "activation.approximate=foo"],
        "approximate argument must be either none or tanh",
    ),
    ("celu alpha 0", ["activation=celu", "activation.alpha=0"], "alpha cannot be 0"),
    (
        "leaky slope beyond float32",
        ["activation=leaky_relu", "activation.negative_slope=1e308"],
        "activation.negative_slope=1e+308",
    ),
    (
        "leaky slope nan",
        ["activation=leaky_relu", "activation.negative_slope=nan"],
        "activation.negative_slope must be a finite number, got nan",
    ),
    ("softplus beta 0", ["activation=softplus", "activation.beta=0"], "activation.beta must be > 0 for softplus"),
    ("elu alpha inf", ["activation=elu", "activation.alpha=inf"], "activation.alpha must be a finite number"),
    (
        "custom target torch.nn.Module",
        ["activation=custom", "activation.target=torch.nn.Module"],
        'missing the required "forward" function',
    ),
    (
        "custom target whose constructor aborts",
        ["activation=custom", "activation.target=tests.test_bad_input.AbortsInInit"],
        "activation.target=tests.test_bad_input.AbortsInInit killed the process that built and ran it (SIGABRT)",
    ),
    (
        "custom target that aborts, in a sweep",
        ["-m", "activation=custom", "activation.target=torch.nn.ReLU,tests.test_bad_input.AbortsInInit"],
        "(SIGABRT) (job activation.target=tests.test_bad_input.AbortsInInit)",
    ),
    # values that ran and meant nothing, or failed after starting
    ("infinite learning rate", ["trainer.lr=inf"], "trainer.lr must be a finite number, got inf"),
    ("subnormal learning rate", ["trainer.lr=5e-324"], "trainer.lr=5e-324 is below 1e-10"),
    ("infinite weight decay", ["trainer.weight_decay=inf"], "trainer.weight_decay must be a finite number"),
    ("infinite ffn ratio", ["model=transformer", "model.ffn_ratio=inf"], "model.ffn_ratio must be a finite number"),
    ("ffn ratio with no units", ["model=transformer", "model.ffn_ratio=1e-9"], "model.ffn_ratio=1e-09 leaves"),
    ("threads beyond any machine", ["trainer.threads=100000"], "trainer.threads must be <= 1024, got 100000"),
    ("validation split of one sample", ["dataset.val_fraction=1e-4"], "a validation split of 0 sample(s)"),
    (
        "a model larger than any memory",
        ["model.width=65536", "model.depth=1000"],
        "parameters, model.width=65536, model.depth=1000",
    ),
    (
        "a model larger than this machine's memory",
        ["model.width=8192", "model.depth=8"],
        "but this machine's available memory is 1.0 GiB",
        one_gib_machine,
    ),
    (
        "activations larger than this machine's memory",
        ["model=cnn", "model.width=256", "trainer.batch_size=1000"],
        "model.width=256, model.depth=3, trainer.batch_size=1000",
        sixteen_mib_machine,
    ),
    (
        "a model larger than the SLURM job's memory",
        ["-m", "hydra/launcher=slurm_cpu", "hydra.launcher.mem_gb=1", "model.width=100,8192", "model.depth=8"],
        "hydra.launcher.mem_gb=1 asks for each job is 1.0 GiB; make it smaller (job model.width=8192)",
        fake_sbatch,
    ),
    ("a sweep of no jobs", ["-m", "seed=range(0,0)"], "seed=range(0,0) sweeps no values"),
    # folders
    ("empty run dir", ["hydra.run.dir="], "hydra.run.dir is empty"),
    ("empty sweep dir", ["-m", "seed=0,1", "hydra.sweep.dir="], "hydra.sweep.dir is empty"),
    ("run dir under a file", ["hydra.run.dir={file}/run"], "lies under {file}, which is a file"),
    ("sweep dir under a file", ["-m", "seed=0,1", "hydra.sweep.dir={file}/sweep"], "lies under {file}"),
    ("run dir name of 300 bytes", ["hydra.run.dir={tmp}/" + "r" * 300], "is 300 bytes long"),
    ("sweep dir name of 300 bytes", ["-m", "seed=0,1", "hydra.sweep.dir={tmp}/" + "s" * 300], "is 300 bytes long"),
    ("read-only run dir", ["hydra.run.dir={tmp}/ro/run"], "{tmp}/ro is read-only", read_only_folder),
    ("read-only sweep dir", ["-m", "seed=0,1", "hydra.sweep.dir={tmp}/ro"], "is read-only", read_only_folder),
    ("full disk", ["hydra.run.dir={tmp}/run"], "cannot be written: No space left on device", full_disk),
    ("full disk under a sweep", ["-m", "seed=0,1"], "No space left on device", full_disk),
    # data
    ("cifar10 missing, the default run folder", ["dataset=cifar10"], "cifar10 not found in data/cifar-10-batches-py"),
    (
        "cifar10 with no network",
        ["dataset=cifar10", "dataset.download=true"],
        "cannot download cifar10 into data (URLError: <urlopen error [Errno -2] Name or service not known>)",
        no_network,
    ),
    ("corrupt mnist files", ["dataset=mnist"], "train-images-idx3-ubyte is not a whole IDX file", corrupt_mnist),
    (
        "half-written mnist folder",
        ["dataset=mnist"],
        "mnist not found in data/MNIST/raw (missing train-images",
        half_mnist,
    ),
    (
        "half-written mnist folder, no network",
        ["dataset=mnist", "dataset.download=true"],
        "cannot download mnist",
        half_mnist,
    ),
    # launchers
    ("sweep batch of 0", ["-m", "seed=0,1", "hydra.sweeper.max_batch_size=0"], "hydra.sweeper.max_batch_size=0"),
    (
        "joblib with 0 jobs",
        ["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"],
        "hydra.launcher.n_jobs=0 runs no jobs",
    ),
    ("slurm without sbatch", ["-m", "seed=0,1", "hydra/launcher=slurm_cpu"], "sbatch is not on PATH", no_sbatch),
    (
        "slurm without submitit",
        ["-m", "seed=0,1", "hydra/launcher=slurm_cpu"],
        "pip install -e '.[launchers]'",
        no_submitit,
    ),
    (
        "joblib without the launchers extra",
        ["-m", "seed=0,1", "hydra/launcher=joblib"],
        "hydra/launcher=joblib needs the launchers extra: pip install -e '.[launchers]'",
        no_launcher_plugins,
    ),
    (
        "slurm without the launchers extra",
        ["-m", "seed=0,1", "hydra/launcher=slurm_gpu"],
        "hydra/launcher=slurm_gpu needs the launchers extra",
        no_launcher_plugins,
    ),
]
# Cases that compose a launcher preset of the launchers extra: without it they are the two cases just above.
NEED_LAUNCHERS = {"a model larger than the SLURM job's memory", "joblib with 0 jobs", "slurm without sbatch"}
PARAMS = [
    pytest.param(*(*c[1:], None)[:3], id=c[0], marks=[pytest.mark.extra("launchers")] if c[0] in NEED_LAUNCHERS else [])
    for c in CASES
]


def run_here(argv: list[str]) -> int:
    """`python run.py ARGV` in this process: its exit status (test_job_memory and test_symlinks use it too)."""
    return run_py_in_process(*argv)


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("overrides, fragment, setup", PARAMS)
def test_bad_input_gets_one_line_and_exit_2_with_nothing_written(
    tmp_path, capsys, monkeypatch, overrides, fragment, setup
):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    monkeypatch.chdir(tmp_path)  # default folders (results/runs/..., data/) would be written here
    monkeypatch.setattr(footprint, "_launcher_request", None)  # a sweep's preflight sets it: undone after the case
    if setup:
        setup(monkeypatch, tmp_path)
    fill = {"file": str(a_file), "tmp": str(tmp_path)}
    args = [*CHEAP, *[a.format(**fill) for a in overrides]]
    if "-m" in args:
        args = ["-m", *[a for a in args if a != "-m"]]
    before = tree(tmp_path)
    code = run_here(args)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2, out.out[-2000:] + out.err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment.format(**fill) in lines[0], out.err
    assert "Traceback" not in out.out + out.err and not out.out.strip()
    assert tree(tmp_path) == before  # nothing written: no run folder, no sweep folder, no data


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any folder")
@pytest.mark.parametrize("mode, fragment", [(0o000, "cannot be read"), (0o500, "cannot be written")])
def test_a_dataset_root_that_cannot_be_read_or_written_gets_one_line(tmp_path, capsys, mode, fragment):
    root = tmp_path / "data"
    root.mkdir(mode=mode)
    try:
        code = run_here([*CHEAP, "dataset=mnist1d", f"dataset.root={root}", f"hydra.run.dir={tmp_path}/run"])
    finally:
        root.chmod(0o700)
    assert code == 2 and fragment in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
