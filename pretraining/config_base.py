"""Shared plumbing of the typed configs: JSON in and out, key and type checks.

Every config is a dataclass deriving from `Config`; unknown keys are errors
that list them, and values are checked against the field types.
"""

import dataclasses
import json
import math
import typing
from typing import Any


def check_keys(cls, data: dict, where: str, tolerated=frozenset()):
    if not isinstance(data, dict):
        raise TypeError(f"`{where}` must be a JSON object. Received: {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - tolerated)
    if unknown:
        raise ValueError(
            f"Unknown key(s) in `{where}`: {unknown}. Allowed keys: {sorted(names)}.")


def coerce(value: Any, annotation, where: str):
    """Checks (and for int→float, converts) one JSON value against a type."""
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{where}` must be a finite number. Received: {where}={value!r}")
    origin = typing.get_origin(annotation)
    expected = origin or annotation
    if expected in (int, float, str, bool, dict, list):
        ok = isinstance(value, expected) and not (
            expected in (int, float) and isinstance(value, bool))
        if not ok:
            raise TypeError(f"`{where}` must be of type {expected.__name__}. "
                            f"Received: {where}={value!r}")
    return value


class Config:
    """Shared JSON plumbing for the config dataclasses."""

    _section = "config"

    @classmethod
    def from_dict(cls, data: dict, where: str | None = None, tolerated=frozenset()):
        where = where or cls._section
        check_keys(cls, data, where, tolerated)
        hints = typing.get_type_hints(cls)
        kwargs = {k: coerce(v, hints[k], f"{where}.{k}")
                  for k, v in data.items() if k not in tolerated}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str, **kwargs):
        """Reads a JSON file; `kwargs` go to `from_dict`. Errors name the file."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"Config file not found: {path}") from None
        except IsADirectoryError:
            raise ValueError(f"Config file {path} is a directory; pass the JSON file "
                             "inside it.") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"Config file {path} is not UTF-8 text (byte {e.start}): "
                             "pass a JSON file.") from None
        except PermissionError as e:
            raise ValueError(f"Config file {path} cannot be read: {e.strerror}.") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"Config file {path} is not valid JSON: {e}") from None
        try:
            return cls.from_dict(data, **kwargs)
        except (TypeError, ValueError) as e:
            raise type(e)(f"In {path}: {e}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def require_positive(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"`{name}` must be a finite number > 0. Received: {name}={value}")
        if value <= 0:
            raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")


def require_non_negative(obj, *names, prefix: str = ""):
    """Each `obj.<name>` must be a finite number >= 0 (`prefix`: e.g. "train.")."""
    for name in names:
        value = getattr(obj, name)
        if not value >= 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"`{prefix}{name}` must be a finite number >= 0. "
                             f"Received: {name}={value}")


def require_choice(name: str, value, choices):
    """`value` must be one of `choices`; the message names `name` and lists them."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")


def require_probability(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")
