"""va/schema.py: JSON Schema validation that fills defaults and names the field of the first problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from va.errors import ExitCode, VaError
from va.schema import load_json_file, schema_path, validate

MINIMAL = {"schema_version": 1, "input": {"audio": "a.wav", "start": "s.png"}}


def test_defaults_are_filled_into_a_copy() -> None:
    document = json.loads(json.dumps(MINIMAL))
    filled = validate(document, "job", "job.json")
    assert document == MINIMAL  # the caller's document is not changed
    assert filled["buffer"] == {"pre_seconds": 0.0, "post_seconds": 0.0}
    assert filled["output"]["basename"] == "final.mp4"
    assert filled["determinism"]["fps"] == 25


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ([], "job.json: must be a JSON object"),
        ({**MINIMAL, "colour": 1}, "job.json: unknown key 'colour'"),
        ({**MINIMAL, "buffer": {"pre_seconds": -1}}, "job.json: buffer.pre_seconds: -1 is less than"),
        (
            {**MINIMAL, "determinism": {"seed_policy": "fixed"}},
            "determinism: 'seed' is a required property",
        ),
        ({"schema_version": 1, "input": {"audio": "a.wav"}}, "input: 'start' is a required property"),
    ],
)
def test_the_first_problem_names_source_and_field(document: object, needle: str) -> None:
    with pytest.raises(VaError) as caught:
        validate(document, "job", "job.json")
    assert caught.value.code == ExitCode.VALIDATION_FAILED
    assert needle in caught.value.message, caught.value.message


def test_every_schema_is_a_file_of_the_package() -> None:
    for name in ("job", "vidax", "assets", "bindings", "lipsync.providers"):
        assert json.loads(schema_path(name).read_text())["$schema"].startswith("https://json-schema.org/")


def test_json_files_missing_or_broken(tmp_path: Path) -> None:
    with pytest.raises(VaError) as missing:
        load_json_file(tmp_path / "nope.json", "job file")
    assert missing.value.code == ExitCode.INPUT_NOT_FOUND and "job file not found" in missing.value.message
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(VaError) as broken:
        load_json_file(tmp_path / "bad.json", "job file")
    assert broken.value.code == ExitCode.VALIDATION_FAILED and "not valid JSON" in broken.value.message
