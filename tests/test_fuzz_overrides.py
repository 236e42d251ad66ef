"""Any value of any key: `python run.py KEY=VALUE ...` is accepted, or refused in one line with exit 2 before
anything is written; and (marked slow) an accepted one runs and writes only inside its run folder.

The override space: every key of the structured Config (harness/setup/config.py), every config group choice in conf/
and every parameter of each activation's YAML, with values drawn from strings (empty, unicode, control characters),
ints and floats (nan, inf, huge, tiny, negative), as Hydra reads them and quoted. Each example runs in its own
temporary working directory with HOME pointing inside it (and MLflow's store, which a user keeps beside their runs,
in that HOME: logger=mlflow or many writes there), and sees a machine of 1 GiB (the memory check is the
same on every machine).
"""

from __future__ import annotations

import dataclasses
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.setup import footprint
from harness.setup.config import Config
from hydra_plugins.harness_sweeper.preflight import preflight
from tests.conftest import CONF_DIR, run_py_in_process

ROOT = Path(__file__).resolve().parents[1]
CONF = Path(CONF_DIR)
BASE = ["dataset=digits", "trainer.steps=0", "trainer.progress=false", "trainer.device=cpu", "trainer.threads=1"]
# What a run of an accepted example may not spend: minutes of training or of torch.compile. The example's own
# values for these keys are still the ones the preflight checked.
BUDGET = ["trainer.steps=3", "trainer.init_trials=0", "trainer.compile=false"]
COUNTS = {"tried": 0, "refused": 0, "accepted": 0, "ran": 0}


def config_keys(node=Config, prefix: str = "") -> list[str]:
    """Every leaf key of the structured Config, dotted (model.width, ..., seed, resume)."""
    keys = []
    for f in dataclasses.fields(node):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys += config_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def group_choices() -> dict[str, list[str]]:
    """Every config group in conf/ and its choices (experiments are appended with +)."""
    groups = {}
    for folder in sorted(p for p in CONF.rglob("*") if p.is_dir()):
        choices = sorted(str(f.relative_to(folder).with_suffix("")) for f in folder.rglob("*.yaml"))
        name = str(folder.relative_to(CONF))
        groups["+" + name if name.startswith("experiment") else name] = choices
    groups["hydra/launcher"] = ["basic", "joblib", *groups.pop("hydra/launcher")]
    return groups


def activation_params() -> list[tuple[str, str]]:
    """(activation choice, parameter) for every parameter of every activation YAML."""
    pairs = []
    for f in sorted((CONF / "activation").glob("*.yaml")):
        pairs += [(f.stem, key) for key in (yaml.safe_load(f.read_text()) or {}) if key != "name"]
    return pairs


KEYS, GROUPS, ACT_PARAMS = config_keys(), group_choices(), activation_params()

SPECIAL = [
    "",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "5e-324",
    "0",
    "-1",
    "null",
    "true",
    "auto",
    "none",
    "tanh",
    "../x",
    "/",
    "a b",
    "é",
    "\u202e",
    "\x1b[31m",
]
numbers = st.one_of(
    st.integers(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e308, 2**63, -(2**63), 0.5, 1.5]),
)
texts = st.one_of(
    st.text(max_size=12), st.text(st.characters(max_codepoint=0x1F), max_size=4), st.sampled_from(SPECIAL)
)


def quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


words = st.one_of(st.sampled_from(SPECIAL[1:15]), st.text("abcxyz019._-/", min_size=1, max_size=8))


@st.composite
def value(draw) -> str:
    """A value as it would appear after '=': a number (half the time), a bare word, or a quoted string of
    anything (unicode, control characters, empty)."""
    kind = draw(st.sampled_from(["number", "number", "bare", "quoted"]))
    if kind == "number":
        return repr(draw(numbers))
    return draw(words) if kind == "bare" else quoted(draw(texts))


@st.composite
def override(draw) -> list[str]:
    kind = draw(st.sampled_from(["key", "group", "activation"]))
    if kind == "key":
        return [f"{draw(st.sampled_from(KEYS))}={draw(value())}"]
    if kind == "group":
        group = draw(st.sampled_from(sorted(GROUPS)))
        choice = draw(st.one_of(st.sampled_from(GROUPS[group]), value()))
        return [f"{group}={choice}"]
    act, param = draw(st.sampled_from(ACT_PARAMS))
    return [f"activation={act}", f"activation.{param}={draw(value())}"]


overrides = st.lists(override(), min_size=1, max_size=3).map(lambda parts: [o for part in parts for o in part])


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def no_network(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


def check_preflight(args: list[str], here: Path, capsys) -> bool:
    """The property of the preflight: accepted (True) with nothing printed, or refused in one line with exit 2;
    nothing written either way."""
    before = tree(here)
    COUNTS["tried"] += 1
    try:
        preflight(["--config-path", CONF_DIR, *args], ROOT)
        code = None
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    assert tree(here) == before, f"{args}: the preflight wrote {tree(here) - before}"
    assert "Traceback" not in out.out + out.err, args
    if code is None:
        COUNTS["accepted"] += 1
        assert not out.err.strip(), args
        return True
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, code, out.err)
    COUNTS["refused"] += 1
    return False


def check_run(args: list[str], here: Path, capsys) -> None:
    """The property of a run the preflight accepted: it runs (exit 0: ok or diverged), writing only inside its run
    folder (and the dataset's cache in the working directory's data/, and MLflow's store in HOME)."""
    run_dir = here / "run"
    code = run_py_in_process(*args, *BUDGET, f"hydra.run.dir={run_dir}")
    out = capsys.readouterr()
    allowed = (run_dir, here / "data", here / "home")
    outside = {p for p in tree(here) if not any((here / p).is_relative_to(a) for a in allowed)}
    assert not outside, f"{args}: written outside the run folder: {sorted(outside)}"
    assert code == 0, (args, code, out.err[-3000:])
    COUNTS["ran"] += 1


def explore(args: list[str], capsys, runs: bool) -> None:
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        here = Path(folder)
        (here / "home").mkdir()
        mp.chdir(here)
        mp.setenv("HOME", str(here / "home"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{here / 'home' / 'mlflow.db'}")
        mp.setattr(footprint, "available_memory", lambda: 2**30)
        mp.setattr(footprint, "_launcher_request", None)
        mp.setattr(urllib.request, "urlopen", no_network)
        full = [*BASE, *args]
        if check_preflight(full, here, capsys) and runs:
            check_run(full, here, capsys)


@pytest.fixture(scope="module", autouse=True)
def say_the_counts():
    """With -s: how many command lines the fuzz tried, refused and ran."""
    yield
    print(
        f"\nfuzz: {COUNTS['tried']} command lines tried, {COUNTS['refused']} refused in one line with exit 2, "
        f"{COUNTS['accepted']} accepted, {COUNTS['ran']} run"
    )


FAST = settings(
    derandomize=True,
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FAST
@given(args=overrides)
def test_any_override_is_accepted_or_refused_in_one_line_with_nothing_written(capsys, args):
    explore(args, capsys, runs=False)


@pytest.mark.slow
@settings(FAST, max_examples=150)
@given(args=overrides)
@example(args=["logger=many"])  # MLflow's store: CI's draw found it writing in the working folder
def test_any_accepted_override_runs_and_writes_only_in_its_run_folder(capsys, args):
    explore(args, capsys, runs=True)


def test_the_fuzz_covers_every_key_group_and_activation_parameter():
    assert {"model.width", "trainer.lr", "dataset.val_fraction", "seed", "resume", "trainer.threads"} <= set(KEYS)
    assert {"activation", "model", "dataset", "trainer", "hydra/launcher", "+experiment"} <= set(GROUPS)
    assert (
        ("softmax", "dim") in ACT_PARAMS
        and ("rrelu", "upper") in ACT_PARAMS
        and "slurm_cpu" in GROUPS["hydra/launcher"]
    )
