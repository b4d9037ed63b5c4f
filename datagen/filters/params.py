"""Filter parameters as YAML delivers them: checked up front, so a wrong type or range is one clear
line naming the parameter, not a traceback from deep inside numpy or a comparison halfway through a run."""
from __future__ import annotations

import types
import typing
from typing import Any

from datagen.errors import DatagenError


def number(name: str, value: Any, *, integer: bool = False, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Any:
    """`value` if it is a number (an integer when asked) within [low, high] ((low, high] with low_open)."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise DatagenError(f"{name} must be {kind}, got {value!r}")
    if value != value:  # NaN passes every comparison below
        raise DatagenError(f"{name} must be {kind}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise DatagenError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise DatagenError(f"{name} must be <= {high}, got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise DatagenError(f"{name} must be true or false, got {value!r}")
    return value


def strings(name: str, value: Any, *, allow_empty: bool = True) -> tuple[str, ...]:
    """A string or a list of strings, as a tuple (YAML writes `allowed: en` as often as `[en]`)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DatagenError(f"{name} must be a string or a list of strings, got {value!r}")
    if not value and not allow_empty:
        raise DatagenError(f"{name} must not be empty")
    return tuple(value)


def check_dataclass_params(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """Check each parameter of a dataclass filter against its annotation (int, float, bool, str tuples,
    dicts, optional ints); returns the parameters with lists turned into tuples."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in params.items():
        hint = hints.get(key)
        optional = False
        if isinstance(hint, types.UnionType) and type(None) in hint.__args__:
            optional = True
            hint = next(a for a in hint.__args__ if a is not type(None))
        if value is None and optional:
            out[key] = value
        elif hint is bool:
            out[key] = boolean(key, value)
        elif hint is int:
            out[key] = number(key, value, integer=True)
        elif hint is float:
            out[key] = number(key, value)
        elif typing.get_origin(hint) is tuple:
            out[key] = strings(key, value)
        elif hint is dict and not isinstance(value, dict):
            raise DatagenError(f"{key} must be a mapping, got {value!r}")
        else:
            out[key] = value
    return out
