"""Typed values to JSON data and back: the one converter between the frozen dataclasses of the job,
the plan and the rules' settings and the JSON they are written as."""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from enum import Enum
from pathlib import Path, PurePath
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
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: as_data(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(as_data(item) for item in value)
    if isinstance(value, list):
        return [as_data(item) for item in value]
    if isinstance(value, dict):
        return {as_data(key): as_data(item) for key, item in value.items()}
    return copy.deepcopy(value)


#: How ``from_data`` makes a value of a type, worked out once a type: ``(kind, what)``: a dataclass
#: (``what``: the class), a tuple, a dict (``what``: its items' shape), a union of several types (``what``:
#: their shapes), an enum (the class), a float, or a value taken as it is.
Shape = tuple[str, Any]


@functools.cache
def _fields_of(kind: type) -> tuple[tuple[str, Shape], ...]:
    """Each field of a dataclass and the shape of its type, once a class (resolving the annotations
    evaluates them anew, and a type's shape is the same every time)."""
    hints = typing.get_type_hints(kind)
    return tuple((field.name, _shape(hints[field.name])) for field in dataclasses.fields(kind))


@functools.cache
def _shape(hint: Any) -> Shape:
    """The shape of a value of type ``hint``."""
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "enum", hint
    if dataclasses.is_dataclass(hint):
        return "dataclass", hint
    if hint is float:
        return "float", hint
    if hint is Path:
        return "path", hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _shape(options[0])
        return "union", tuple(_shape(option) for option in options)
    if origin is tuple:
        return "tuple", _shape(args[0])
    if origin is dict:
        return "dict", _shape(args[1])
    return "value", hint


def _option_for(shapes: tuple[Shape, ...], value: Any) -> Shape:
    """The type of a union that JSON ``value`` is: an array the tuple, an object the dataclass (or
    mapping), anything else the first of the others."""
    if isinstance(value, list | tuple):
        wanted: tuple[str, ...] = ("tuple",)
    elif isinstance(value, dict):
        wanted = ("dataclass", "dict")
    else:
        wanted = ("value", "float", "enum", "path")
    return next((shape for shape in shapes if shape[0] in wanted), ("value", None))


def from_data(hint: Any, value: Any) -> Any:
    """``value`` (from JSON that ``as_data`` wrote) as the type ``hint`` names, exactly as it was written:
    dataclasses (a field the data leaves out takes its default), tuples, enums, paths (written as
    strings), ``X | None`` and other unions, dicts."""
    return _typed(_shape(hint), value, False)


def from_document(hint: Any, value: Any) -> Any:
    """``from_data`` of a document a person wrote (a job), where JSON's 3 stands for the float 3.0 when
    the field is a float."""
    return _typed(_shape(hint), value, True)


def _typed(shape: Shape, value: Any, floats: bool) -> Any:
    if value is None:
        return None
    kind, inner = shape
    if kind == "value":
        return value
    if kind == "union":
        kind, inner = _option_for(inner, value)
    if kind == "dataclass":
        made = {}
        for name, typed in _fields_of(inner):
            if name in value:
                item = value[name]
                # Most fields are plain values: taken without a call (a batch's thousand plans are read so).
                made[name] = item if typed[0] == "value" or item is None else _typed(typed, item, floats)
        return inner(**made)
    if kind == "tuple":
        return tuple(_typed(inner, item, floats) for item in value)
    if kind == "float":
        return float(value) if floats and isinstance(value, int) and not isinstance(value, bool) else value
    if kind == "dict":
        return {key: _typed(inner, item, floats) for key, item in value.items()}
    if kind == "enum":
        return inner(value)
    if kind == "path":
        return Path(value)
    return value
