"""Reading and checking user settings, shared by every config (run config, training config, LoRA, sampling).

Each raises :class:`~larpo.errors.InputError` with one line that names the setting. Nothing here
imports torch: the CLI validates configs with these before loading any model.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from larpo.errors import InputError


def check_choice(label: str, value: object, choices: Iterable[str]) -> None:
    """``value`` is one of ``choices``; ``label`` names the setting in the message."""
    choices = tuple(choices)
    if value not in choices:
        raise InputError(f"{label} must be one of {', '.join(choices)}; got {value!r}")


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` is an integer (not a bool), at least ``minimum`` when one is given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return value


def is_token_ids(value: object) -> bool:
    """Whether ``value`` is a list (or tuple) of token ids: ints (not bools) >= 0."""
    return isinstance(value, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def check_known_keys(
    keys: Iterable[Any], valid: Iterable[str], what: str, *, list_valid: bool = False
) -> None:
    """Every key is one of ``valid``; an unknown one is reported as ``<what> 'key'`` with the closest
    valid key as a suggestion (and, with ``list_valid``, every valid key)."""
    valid = list(valid)
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listing = f"; valid: {', '.join(valid)}" if list_valid else ""
            raise InputError(f"{what} {key!r}{hint}{listing}")


def yaml_number(value: Any) -> Any:
    """``value`` as a float when it is a string that spells one, else unchanged.

    PyYAML follows YAML 1.1, which reads ``1e-5`` (no dot) as a string; users mean the number.
    """
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; anything else is an InputError."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the config ({error})") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InputError(f"{path}: a config must be a mapping of settings, got {type(loaded).__name__}")
    return loaded


def check_field_types(settings: Any, where: str = "") -> None:
    """Every field of the dataclass instance ``settings`` holds a value of its annotated type (a string
    that spells a number where one belongs is read as that number, and an int where a float belongs
    becomes a float); ``where`` prefixes the message."""
    hints = typing.get_type_hints(type(settings))
    for item in dataclasses.fields(settings):
        value = _yaml11_float(getattr(settings, item.name), hints[item.name])
        setattr(settings, item.name, value)
        if not _conforms(value, hints[item.name]):
            raise InputError(
                f"{where}'{item.name}' must be {_describe(hints[item.name])}, got {type(value).__name__} {value!r}"
            )
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and hints[item.name] in (float, float | None)
        ):
            setattr(settings, item.name, float(value))


def _yaml11_float(value: Any, hint: Any) -> Any:
    """A string where a number belongs, as the number it spells (see :func:`larpo.checks.yaml_number`)."""
    if isinstance(value, str) and _conforms(0.5, hint) and not _conforms(value, hint):
        return yaml_number(value)
    return value


def _conforms(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and bool(value) and all(_conforms(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    raise TypeError(f"unsupported config type {hint}")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is list:
        return f"a non-empty list of {_describe(typing.get_args(hint)[0])}"
    if typing.get_origin(hint) is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]
