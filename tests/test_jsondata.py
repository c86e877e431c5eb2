"""va/jsondata.py: typed values to JSON data and back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from va.jsondata import as_data, from_data, from_document


class Colour(StrEnum):
    RED = "red"


@dataclass(frozen=True, slots=True)
class Inner:
    size: float
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Outer:
    colour: Colour
    inner: Inner | None
    sizes: tuple[float, ...]
    either: str | tuple[str | Inner, ...] | None
    by_name: dict[str, Inner]


def test_a_value_written_as_json_reads_back_equal_and_of_its_types() -> None:
    value = Outer(
        colour=Colour.RED,
        inner=Inner(2.5, "x"),
        sizes=(1.0, 2.0),
        either=("a", Inner(1.0)),
        by_name={"k": Inner(3.0)},
    )
    read = from_data(Outer, json.loads(json.dumps(as_data(value))))
    assert read == value
    assert read.colour is Colour.RED and isinstance(read.sizes, tuple) and isinstance(read.either, tuple)
    assert isinstance(read.either[1], Inner) and isinstance(read.by_name["k"], Inner)


def test_a_union_is_read_by_the_shape_of_the_value() -> None:
    base = {"colour": "red", "inner": None, "sizes": [], "by_name": {}}
    assert from_data(Outer, {**base, "either": "one"}).either == "one"
    assert from_data(Outer, {**base, "either": ["a", "b"]}).either == ("a", "b")
    assert from_data(Outer, {**base, "either": None}).either is None


def test_a_document_s_whole_numbers_are_floats_where_a_float_is_meant_and_written_data_stays_exact() -> None:
    data = {"colour": "red", "inner": {"size": 3}, "sizes": [1, 2], "either": None, "by_name": {}}
    typed = from_document(Outer, data)
    assert typed.inner == Inner(3.0) and isinstance(typed.inner.size, float)
    assert all(isinstance(size, float) for size in typed.sizes)
    exact = from_data(Outer, data)
    assert isinstance(exact.inner.size, int)  # as written: a plan read back keeps its JSON text
    assert from_document(Inner, {"size": True}).size is True  # a bool is not a number here


@dataclass(frozen=True, slots=True)
class Probed:
    path: Path
    size: tuple[int, int]
    earlier: Path | None = None


def test_a_path_is_written_as_a_string_and_read_back_as_a_path() -> None:
    value = Probed(Path("inputs/start image.png"), (640, 480), Path("/abs/voice.wav"))
    data = as_data(value)
    assert data == {"path": "inputs/start image.png", "size": (640, 480), "earlier": "/abs/voice.wav"}
    read = from_data(Probed, json.loads(json.dumps(data)))
    assert read == value and isinstance(read.path, Path) and isinstance(read.earlier, Path)
    assert from_data(Probed, {"path": "a.png", "size": [1, 2]}).earlier is None
