"""The one validated reader of the records the harness keeps: a run's summary.json and a sweep's sweep.json.

Status, the report and resume read every record through read_summary_file and read_manifest_file. A record that
is not what the harness writes (truncated, hand-edited, a string where a number goes, NaN, another schema version)
raises Unreadable with one line naming every failing field; callers list it once as unreadable and leave it out.
The fields are those of the results contract (docs/results.md); pydantic checks types and ranges.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from harness.common import metrics
from harness.common.text import NOTE_LIMIT, clean
from harness.records.upgrade import upgrade
from harness.setup import config as config_module

SCHEMA_VERSION = 2  # the summary.json layout this harness writes; it reads 1 too, upgraded (harness.records.migrate)
SchemaVersion = Literal[1, 2]  # the layouts it reads: 1 and SCHEMA_VERSION (a Literal names values, not constants)
Status = Literal["ok", "diverged", "failed"]
STATUSES: tuple[str, ...] = typing.get_args(Status)
MAX_RECORD_BYTES = 256 << 20  # a summary or manifest beyond this is not one the harness wrote

# JSON as the harness writes it: exact types (no "0.9" for 0.9, no 1 for true), finite numbers (null for the rest).
STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
Fraction = Annotated[float, Field(ge=0, le=1)]  # accuracies, dead and saturated fractions
NonNegative = Annotated[float, Field(ge=0)]  # times, losses, rates, norms
Count = Annotated[int, Field(ge=0)]
ByLayer = dict[str, Fraction | None]


def finite_or_none(value: object) -> object:
    """JSON has no NaN or Inf: store non-finite numbers as null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


class Unreadable(ValueError):
    """A record that cannot be used; the message is one line (what is wrong, every failing field)."""


def config_model() -> type[BaseModel]:
    """The run configuration of harness.setup.config.Config, typed field by field; keys it does not know are allowed
    (the contract's `config` holds the whole configuration, older or newer keys included), missing ones are not
    required (older summaries)."""
    hints = typing.get_type_hints(config_module.Config, vars(config_module))
    # create_model's field definitions, (annotation, default): annotations are values only pydantic types
    fields: dict[str, Any] = {f.name: (hints[f.name] | None, None) for f in dataclasses.fields(config_module.Config)}
    return create_model("RunConfig", __config__=ConfigDict(strict=True, allow_inf_nan=False, extra="ignore"), **fields)


if typing.TYPE_CHECKING:  # a model made at import, from Config's fields: to mypy, any pydantic model
    RunConfig = BaseModel
else:
    RunConfig = config_model()


class Group(BaseModel):
    model_config = STRICT
    id: str
    size: Annotated[int, Field(ge=1)]
    index: Count


class FileRecord(BaseModel):
    model_config = STRICT
    bytes: Count
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class SummaryFields(BaseModel):
    """summary.json (docs/results.md) but for the metric registry's stored metrics (summary_model adds those).
    Keys not listed here or in the registry are refused: a new key is added here with its type."""

    model_config = STRICT
    # identity
    schema_version: SchemaVersion
    status: Status
    activation: str | None = None
    model: str | None = None
    dataset: str | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    config_hash: str | None = None
    overrides: list[str] | None = None
    config: RunConfig | None = None
    init_used: str | None = None
    run_dir: str | None = None
    group: Group | None = None
    files: dict[str, FileRecord] | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # outcome
    train_acc: Fraction | None = None
    val_acc: Fraction | None = None
    best_val_acc: Fraction | None = None
    steps: Count | None = None
    diverged_at_step: Count | None = None
    n_test: Count | None = None
    # speed
    train_time_s: NonNegative | None = None
    loop_time_s: NonNegative | None = None
    train_cpu_time_s: NonNegative | None = None
    clock_samples_per_s: NonNegative | None = None
    speed_clock: Literal["cuda_events", "thread_cpu", "wall"] | None = None
    peak_mem_mb: NonNegative | None = None
    # probes (docs/measurements.md)
    dead_fraction_by_layer: ByLayer | None = None
    saturated_fraction_by_layer: ByLayer | None = None
    zero_fraction_by_layer: ByLayer | None = None  # activation sparsity (harness.networks.sparsity)
    small_fraction_by_layer: ByLayer | None = None
    cett_sparsity_by_layer: ByLayer | None = None
    dead_fraction_init_by_layer: ByLayer | None = None
    lost_fraction_by_layer: ByLayer | None = None
    act_mean_by_layer: dict[str, float | None] | None = None
    act_std_by_layer: dict[str, NonNegative | None] | None = None
    grad_norm_init_by_layer: dict[str, NonNegative | None] | None = None
    grad_norm_by_layer: dict[str, NonNegative | None] | None = None
    grad_norm_final_by_layer: dict[str, NonNegative | None] | None = None
    grad_norm_global: NonNegative | None = None
    # born-dead trials (trainer.init_trials, harness/training/born_dead.py)
    init_trials: Count | None = None
    born_dead_count: Count | None = None
    born_dead_fraction: Fraction | None = None
    born_dead_se: NonNegative | None = None
    born_dead_first_layer: dict[str, Count] | None = None
    init_dead_fraction_mean: Fraction | None = None
    init_trial_seeds: list[Count] | None = None
    # provenance
    device: str | None = None
    device_name: str | None = None
    num_threads: Annotated[int, Field(ge=1)] | None = None
    precision: str | None = None
    compile: bool | None = None
    n_params: Count | None = None
    width_used: Annotated[int, Field(ge=1)] | None = None
    # the activation modules' own parameters (harness.networks.learnt): layer -> parameter -> values as (nested) lists
    activation_params_init: dict[str, dict[str, list[Any]]] | None = None
    activation_params_final: dict[str, dict[str, list[Any]]] | None = None
    torch_version: str | None = None
    package_versions: dict[str, str | None] | None = None
    git_sha: str | None = None
    git_dirty: bool | None = None
    dataset_checksum: str | None = None
    hostname: str | None = None
    pid: Count | None = None

    @model_validator(mode="after")
    def finished_runs_name_their_configuration(self) -> SummaryFields:
        if self.status != "failed" and not self.config_hash:  # resume matches finished runs by it
            raise ValueError(f"a finished run (status {self.status}) records its config_hash")
        return self


class ManifestJob(BaseModel):
    model_config = STRICT
    dir: str
    overrides: list[str] | None = None
    config_hash: str | None = None

    @field_validator("dir")
    @classmethod
    def inside_the_sweep(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not value or "\0" in value or path.is_absolute() or ".." in path.parts:
            raise ValueError("a job folder is a path inside the sweep folder")
        if len(value.encode("utf-8", "surrogatepass")) > 4096 or any(
            len(p.encode("utf-8", "surrogatepass")) > 255 for p in path.parts
        ):
            raise ValueError("a job folder's name is at most 255 bytes a part, 4096 in all")
        return value


class Manifest(BaseModel):
    """sweep.json (harness.sweeps.sweep.write_manifest): the command and every job's folder."""

    model_config = STRICT
    command: str | None = None
    jobs: list[ManifestJob]


def read_record(path: Path) -> str:
    """A record's text; Unreadable when it cannot be read as UTF-8 text of a sensible size."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_RECORD_BYTES:
        raise Unreadable(f"larger than {MAX_RECORD_BYTES >> 20} MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("not UTF-8 text") from None


def validated(model: type[BaseModel], text: str) -> dict:
    """The JSON object in text, as written, once model has accepted it; Unreadable naming every failing field."""
    try:
        model.model_validate_json(text)
    except ValidationError as exc:
        raise Unreadable(describe(exc)) from None
    return json.loads(text)


def describe(exc: ValidationError, shown: int = 5) -> str:
    """Every failing field in one line: 'test_acc: Input should be a valid number (got "high"); ...'."""
    parts = []
    for error in exc.errors(include_url=False)[:shown]:
        where = ".".join(map(str, error["loc"])) or "the record"
        got = error.get("input")
        whole = isinstance(got, (dict, list)) or error["type"] == "json_invalid"  # nothing short to show
        value = "" if whole else f" (got {clean(json_text(got), 40)})"
        parts.append(f"{where}: {error['msg']}{value}")
    more = exc.error_count() - shown
    return clean("; ".join(parts) + (f"; and {more} more" if more > 0 else ""), NOTE_LIMIT)


def json_text(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# The type of a registry metric's field, by its format: fractions in [0, 1], non-negative rates and losses.
FIELD_TYPES = {"percent": Fraction, "points": Fraction, "rate": NonNegative, "ratio": NonNegative,
               "loss": NonNegative, "number": float}  # fmt: skip


@functools.cache
def summary_model(registry: tuple[metrics.Metric, ...]) -> type[BaseModel]:
    """The summary.json schema: SummaryFields plus the registry's stored metrics, each typed by its format."""
    # create_model's field definitions, (annotation, default): annotations are values only pydantic types
    fields: dict[str, Any] = {m.key: (FIELD_TYPES[m.fmt] | None, None) for m in registry if m.source != "report"}
    return create_model("Summary", __base__=SummaryFields, **fields)


def read_summary_file(path: Path) -> dict:
    """A run's summary.json checked against summary_model, as schema 2 (a schema-1 one upgraded by
    harness.records.migrate.upgrade, then checked again); Unreadable otherwise."""
    schema = summary_model(metrics.METRICS)
    summary = validated(schema, read_record(path))
    if summary["schema_version"] == SCHEMA_VERSION:
        return summary
    return validated(schema, json.dumps(finite_or_none(upgrade(summary, Path(path).parent))))


def read_manifest_file(path: Path) -> dict:
    """A sweep's sweep.json as written ({"command", "jobs": [{"dir", ...}]}), checked; Unreadable otherwise."""
    return validated(Manifest, read_record(path))
