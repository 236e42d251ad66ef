"""Bad input gets one line and exit 2, before any data is loaded and with nothing written: one table, run in process
(`python run.py ARGS` as run.cli with a patched argv)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

import run
from tests.conftest import CONF_DIR

CHEAP = ["dataset=digits", "trainer.steps=0", "trainer.progress=false", "trainer.device=cpu", "trainer.threads=1"]


class RaisesInInit(torch.nn.Module):
    """A custom activation whose constructor fails."""

    def __init__(self):
        raise ValueError("this activation cannot be built")


class ExitsInInit(torch.nn.Module):
    """A custom activation whose constructor calls sys.exit."""

    def __init__(self):
        sys.exit(0)


# (case id, overrides, a fragment of the one line); {file}: an existing file, {tmp}: this case's folder
CASES = [
    # Hydra's own multi-line messages, made one line naming the key and the valid choices
    ("unknown activation", ["activation=lrelu"], "Could not find 'activation/lrelu'; valid 'activation': "),
    ("unknown model", ["model=resnet"], "valid 'model': cnn, mlp, rnn, transformer"),
    ("unknown dataset", ["dataset=imagenet"], "valid 'dataset': cifar10, digits"),
    ("unknown experiment", ["+experiment=nosuch"], "valid 'experiment': article_claims"),
    ("unknown launcher", ["hydra/launcher=nosuch"], "valid 'hydra/launcher': basic, joblib"),
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
    ("kernel larger than the input", ["model=cnn", "model.kernel_size=41", "dataset=mnist1d"],
     "model.kernel_size=41 is larger than the input"),
    ("norm on the rnn", ["model=rnn", "model.norm=batch"], "model.norm is not supported by the rnn"),
    ("patch that does not divide the input", ["model=transformer", "model.patch=3", "dataset=mnist1d"],
     "model.patch=3 does not divide the input (40)"),
    ("patch that does not tile the image", ["model=transformer", "dataset=digits", "model.patch=5"],
     "model.patch=5 does not divide the input (8x8)"),
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
    ("activation parameter of the wrong type", ["activation=leaky_relu", "activation.negative_slope=abc"],
     "negative_slope"),
    ("custom without a target", ["activation=custom"], "activation.target"),
    ("custom target not importable", ["activation=custom", "activation.target=torch.nn.NoSuch"],
     "cannot import activation.target='torch.nn.NoSuch'"),
    ("custom target os.getcwd", ["activation=custom", "activation.target=os.getcwd"], "getcwd> returned a str"),
    ("custom target os.system", ["activation=custom", "activation.target=os.system"], "system() missing"),
    ("custom target whose constructor raises", ["activation=custom",
                                                "activation.target=tests.test_bad_input.RaisesInInit"],
     "this activation cannot be built"),
    ("custom target whose constructor exits", ["activation=custom",
                                               "activation.target=tests.test_bad_input.ExitsInInit"], "SystemExit"),
    ("custom target that exits, in a sweep", ["-m", "activation=custom",
                                              "activation.target=torch.nn.ReLU,tests.test_bad_input.ExitsInInit"],
     "SystemExit"),
    # folders
    ("run dir is a file", ["hydra.run.dir={file}"], "is a file, not a folder"),
    ("sweep dir is a file", ["-m", "seed=0,1", "hydra.sweep.dir={file}"], "is a file, not a folder"),
    ("dataset root is a file", ["dataset=mnist1d", "dataset.root={file}"], "dataset.root={file} is a file"),
    ("dataset root under a file", ["dataset=mnist1d", "dataset.root={file}/data"], "is a file"),
    ("a job folder outside its sweep", ["-m", "activation=custom", "activation.target=torch.nn.Identity",
                                        "+activation.tag=x/../../../ESCAPED"], "would lie outside the sweep folder"),
    ("a job folder name too long", ["-m", "activation=custom", "activation.target=torch.nn.Identity",
                                    "+activation.tag=" + "x" * 300], "longer than 255 bytes"),
]


def run_here(argv: list[str]) -> tuple[int, str, str]:
    saved = sys.argv
    sys.argv = ["run.py", "--config-path", CONF_DIR, *argv]
    try:
        run.cli()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return code


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("overrides, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, overrides, fragment):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    fill = {"file": str(a_file), "tmp": str(tmp_path)}
    args = [a.format(**fill) for a in overrides]
    folders = [f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep", f"dataset.root={tmp_path}/data"]
    keys = {a.split("=")[0] for a in args}
    args = [*CHEAP, *[f for f in folders if f.split("=")[0] not in keys], *args]
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
