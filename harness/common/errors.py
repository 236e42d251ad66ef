"""Bad input, reported in one line before any work starts, and the checks that raise it (values, names, types).

Here rather than in harness/setup/config.py so that harness.networks.models (whose families validate themselves) depends
on neither: harness.setup.config reads the model registry, and the registry's modules raise these. harness.setup.config
exports them too, where the rest of the code has always imported them from.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration value, reported in one line before any work starts."""


class ActivationError(ConfigError):
    """A bad activation name or parameter."""


class DataError(ConfigError):
    """A dataset that cannot be loaded, or that the model cannot take."""


def check(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ok."""
    if not ok:
        raise ConfigError(message)


def one_of(key: str, value: object, valid: Collection[str]) -> None:
    """Refuse a value that is not a name in `valid` (a tuple or a registry dict)."""
    check(value in valid, f"{key}={value!r} is not valid; choose one of {', '.join(valid)}")


def init_fields(cls: type) -> dict[str, Any]:
    """A dataclass's constructor keys and their types, in order (a family's `name` is its class's, not a key). The
    types are annotations as typing.get_type_hints gives them (a class, a union, dict[str, Any], ...)."""
    return _init_fields(cls)


@functools.cache
def _init_fields(cls: type) -> dict[str, Any]:
    """init_fields, cached by class (a plain function in front of it: mypy takes a dataclass class whose instances
    are unhashable for an unhashable cache key)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def typed_fields(cls: type, keys: Mapping[str, object], prefix: str) -> dict[str, Any]:
    """keys checked against cls's fields: an int where a float is declared becomes that float (a hash never tells
    2 from 2.0); a key cls lacks, or a value of another type, is a ConfigError naming prefix + key. The values are
    cls's keyword arguments, each of its field's type: checked here, at run time, which is why they are Any."""
    fields, section = init_fields(cls), prefix.rstrip(".") or "the top level"
    for key in keys:
        check(key in fields, f"{prefix}{key} is not a configuration key; {section} takes {', '.join(fields)}")
    return {key: typed(prefix + key, value, fields[key]) for key, value in keys.items()}


def typed(key: str, value: object, annotation: object) -> object:
    """value as a field annotated so takes it (bool, int, float, str, their unions with None, Any); ConfigError
    for another type."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    options = options or (annotation,)
    kinds = [typing.get_origin(t) or t for t in options]  # dict[str, Any] -> dict
    if Any in kinds or (value is None and type(None) in kinds):
        return value
    if float in kinds and (type(value) is int or type(value) is float):
        return float(value)
    if type(value) in kinds:
        return value
    names = " or ".join("null" if t is type(None) else getattr(t, "__name__", str(t)) for t in options)
    raise ConfigError(f"{key}={value!r} must be {names}")
