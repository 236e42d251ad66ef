"""docs/configuration.md lists every key and every choice: it is the generator's output (scripts/config_docs.py), and,
checked without the generator, every field of the schema's dataclasses, every YAML file of every conf group and
every activation parameter appears in it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from scripts import config_docs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
GROUPS = ("activation", "model", "dataset", "trainer", "hydra/launcher", "experiment")


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def section(doc: str, heading: str) -> str:
    """The text from a heading line that starts with `heading` to the next heading of any level."""
    start = doc.index("\n" + heading)
    end = re.search(r"\n#+ ", doc[start + 1 :])
    return doc[start : start + 1 + end.start()] if end else doc[start:]


def test_committed_doc_is_the_generators_output(doc):
    assert doc == config_docs.render(doc), "docs/configuration.md is stale: run python scripts/config_docs.py"


def test_check_flags_a_stale_doc_in_one_line(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(DOC.read_text().replace("| `trainer.lr` |", "| `trainer.learning_rate` |"))
    assert config_docs.main(["--check", "--doc", str(stale)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stale" in err
    assert config_docs.main(["--check", "--doc", str(DOC)]) == 0


def test_every_choice_of_every_group_is_listed(doc):
    for group in GROUPS:
        files = sorted((ROOT / "conf" / group).rglob("*.yaml"))
        assert files, group
        for path in files:
            name = path.relative_to(ROOT / "conf" / group).with_suffix("").as_posix()
            assert f"`{group}={name}`" in doc, f"{group}={name} ({path.relative_to(ROOT)}) is not in the doc"


def test_the_choices_the_user_missed_are_listed(doc):
    # the report of 2026-12-04: model=transformer, the gated activations, relu_squared and star_relu were missing
    for choice in ("model=transformer", "activation=glu", "activation=reglu", "activation=geglu", "activation=swiglu"):
        assert f"| `{choice}` |" in doc or f"#### `{choice}`" in doc
    for choice in ("activation=bilinear", "activation=relu_squared", "activation=star_relu"):
        assert f"| `{choice}` |" in doc
    assert "| `activation=star_relu` | `activation.scale` | float |" in doc


def rows(text: str, key: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]


def test_every_field_of_the_schema_is_a_row_with_type_default_and_description(doc):
    from harness.setup.config import Config, DatasetConfig, LoggerConfig, TrainerConfig
    from hydra_plugins.harness_sweeper.harness_sweeper import HarnessSweeperConf

    sections = {"": Config, "dataset.": DatasetConfig, "trainer.": TrainerConfig, "logger.": LoggerConfig}
    sections["hydra.sweeper."] = HarnessSweeperConf
    for prefix, cls in sections.items():
        for f in dataclasses.fields(cls):
            if prefix == "" and f.name in ("activation", "model", "dataset", "trainer", "logger"):
                assert f"`{f.name}=`" in doc  # a group: its keys have their own section
                continue
            found = rows(doc, prefix + f.name)
            assert len(found) == 1, f"{prefix}{f.name} of {cls.__name__} has {len(found)} rows"
            cells = [c.strip() for c in found[0].strip("|").split(" | ")]
            assert len(cells) == 4 and all(cells), found[0]  # key, type, default, description


def test_every_model_family_section_has_each_of_its_keys(doc):
    from harness.networks.models import MODELS
    from harness.setup.config import ModelKeys

    documented: set[str] = set()
    for name, family in MODELS.items():
        text = section(doc, f"#### `model={name}`")
        for f in dataclasses.fields(family.config):
            if f.init:
                assert len(rows(text, f"model.{f.name}")) == 1, f"model.{f.name} of model={name}"
                documented.add(f.name)
    assert {f.name for f in dataclasses.fields(ModelKeys)} - {"name"} <= documented


def test_every_activation_parameter_has_a_row(doc):
    from harness.networks.activations import ACTIVATIONS, parameters_of

    for name, entry in ACTIVATIONS.items():
        for param in parameters_of(entry.factory):
            row = f"| `activation={name}` | `activation.{param}` |"
            assert row in doc, f"{name}'s parameter {param} is not in the doc"


def test_a_field_without_a_description_stops_the_generator():
    @dataclasses.dataclass
    class Undocumented:
        documented: int = 1  # said here
        # said above, over two
        # lines
        above: int = 2
        bare: int = 3

    comments = config_docs.field_comments(Undocumented)
    assert comments == {"documented": "said here", "above": "said above, over two lines"}
    with pytest.raises(SystemExit, match="trainer.bare has no description"):
        config_docs.schema_table(Undocumented, "trainer.")
