"""Typed values to JSON data and back: the one converter between the frozen dataclasses of the job,
the plan and the rules' settings and the JSON they are written as."""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from enum import Enum
from typing import Any

_SCALARS = (str, int, float, bool, type(None))


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def as_data(value: Any) -> Any:
    """A typed value as JSON data: ``dataclasses.asdict`` without its deep copy of every scalar
    (a graph of a thousand jobs renders each plan, and the copies were most of the time)."""
    if isinstance(value, _SCALARS):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: as_data(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(as_data(item) for item in value)
    if isinstance(value, list):
        return [as_data(item) for item in value]
    if isinstance(value, dict):
        return {as_data(key): as_data(item) for key, item in value.items()}
    return copy.deepcopy(value)


@functools.cache
def _fields_of(kind: type) -> tuple[tuple[str, Any], ...]:
    """Each field of a dataclass and its resolved type, once a class (resolving evaluates them anew)."""
    hints = typing.get_type_hints(kind)
    return tuple((field.name, hints[field.name]) for field in dataclasses.fields(kind))


@functools.cache
def _shape(hint: Any) -> tuple[str, Any]:
    """What ``from_data`` makes of a value of type ``hint``, once a type: ``(kind, the type inside)``;
    a union of several types (besides None) is ``("union", their shapes)``."""
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "enum", hint
    if dataclasses.is_dataclass(hint):
        return "dataclass", hint
    if hint is float:
        return "float", hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _shape(options[0])
        return "union", tuple(_shape(option) for option in options)
    if origin is tuple:
        return "tuple", args[0]
    if origin is dict:
        return "dict", args[1]
    return "value", hint


def _option_for(shapes: tuple[tuple[str, Any], ...], value: Any) -> tuple[str, Any]:
    """The type of a union that JSON ``value`` is: an array the tuple, an object the dataclass (or
    mapping), anything else the first of the others."""
    if isinstance(value, list | tuple):
        wanted: tuple[str, ...] = ("tuple",)
    elif isinstance(value, dict):
        wanted = ("dataclass", "dict")
    else:
        wanted = ("value", "float", "enum")
    return next((shape for shape in shapes if shape[0] in wanted), ("value", None))


def from_data(hint: Any, value: Any) -> Any:
    """``value`` (from JSON that ``as_data`` wrote) as the type ``hint`` names, exactly as it was written:
    dataclasses (a field the data leaves out takes its default), tuples, enums, ``X | None`` and other
    unions, dicts."""
    return _typed(hint, value, False)


def from_document(hint: Any, value: Any) -> Any:
    """``from_data`` of a document a person wrote (a job), where JSON's 3 stands for the float 3.0 when
    the field is a float."""
    return _typed(hint, value, True)


def _typed(hint: Any, value: Any, floats: bool) -> Any:
    if value is None:
        return None
    kind, inner = _shape(hint)
    if kind == "union":
        kind, inner = _option_for(inner, value)
    if kind == "dataclass":
        fields = _fields_of(inner)
        return inner(**{name: _typed(typed, value[name], floats) for name, typed in fields if name in value})
    if kind == "tuple":
        return tuple(_typed(inner, item, floats) for item in value)
    if kind == "float" and floats and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "dict":
        return {key: _typed(inner, item, floats) for key, item in value.items()}
    if kind == "enum":
        return inner(value)
    return value
