"""va/schema.py: JSON Schema validation that fills defaults and names the field of the first problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Media
from va.errors import ExitCode, VaError
from va.job import load_job
from va.schema import load_json_file, schema_path, validate, validate_slowly

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


def defaults_out_of_reach(node: object, where: str = "", reached: bool = True) -> list[str]:
    """Where a default (or a $ref, which may lead to one) sits where va.schema.fill_defaults does not
    go: it goes through properties, additionalProperties, items and $ref ($defs), not through if/then,
    allOf, anyOf... where jsonschema's defaulting validator would fill it in too."""
    if isinstance(node, list):
        return [miss for item in node for miss in defaults_out_of_reach(item, where, False)]
    if not isinstance(node, dict):
        return []
    misses = [where] if ("default" in node or "$ref" in node) and not reached else []
    for key, value in node.items():
        if key in ("properties", "$defs") and isinstance(value, dict):
            for name, subschema in value.items():
                misses += defaults_out_of_reach(subschema, f"{where}/{key}/{name}", reached)
        elif key in ("items", "additionalProperties"):
            misses += defaults_out_of_reach(value, f"{where}/{key}", reached)
        elif key not in ("default", "const", "enum", "examples"):
            misses += defaults_out_of_reach(value, f"{where}/{key}", False)
    return misses


@pytest.mark.parametrize("name", ["job", "vidax", "assets", "bindings", "lipsync.providers"])
def test_every_default_is_where_the_fast_path_fills_it(name: str) -> None:
    schema = json.loads(schema_path(name).read_text())
    assert defaults_out_of_reach(schema) == []
    # the check itself finds a default the fast path would miss
    assert defaults_out_of_reach({"if": {"properties": {"a": {"default": 1}}}}) == ["/if/properties/a"]


RICH_JOB = {
    "schema_version": 1,
    "input": {"audio": "voice.wav", "start": "portrait.png"},
    "motion": {"prompt": "push-in", "strength": 0.4, "camera": "zoom_in"},
    "timeline": {"segments": [{"start": 0.0, "end": 1.5, "caption": "Hallo"}, {"start": 2, "end": 3}]},
    "buffer": {"pre_seconds": 0.5},
    "determinism": {"fps": 30, "seed_policy": "random"},
    "comfyui": {"workflow_ids": ["held_start_batch"], "params": {"width": 512}},
    "stabilize": {"enable": True},
    "lipsync": {"enable": True, "provider": "audiogram"},
    "output": {"basename": "clip.mp4", "width": 640},
    "captions": {},
    "cleanup": {},
}


def variants(document: dict[str, object]) -> list[dict[str, object]]:
    """The document, and the document without each of its keys (at the top and one level down)."""
    found = [document]
    for key, value in document.items():
        found.append({k: v for k, v in document.items() if k != key})
        if isinstance(value, dict):
            for inner in value:
                found.append({**document, key: {k: v for k, v in value.items() if k != inner}})
    return found


def config_documents() -> list[tuple[str, dict[str, object]]]:
    root = Path(__file__).resolve().parents[1]
    named = [("vidax", "config/vidax.json"), ("assets", "config/assets.json")]
    named += [("lipsync.providers", "config/lipsync.providers.json")]
    named += [("bindings", path) for path in ("assets/workflows/held_start_batch.bindings.json",)]
    return [(name, json.loads((root / path).read_text())) for name, path in named]


def test_the_fast_path_fills_and_accepts_as_the_defaulting_validator_does() -> None:
    samples = json.loads((Path(__file__).resolve().parents[1] / "assets/samples/job.json").read_text())
    documents = [("job", d) for base in (MINIMAL, samples, RICH_JOB) for d in variants(base)]
    documents += [(name, d) for name, base in config_documents() for d in variants(base)]
    accepted = 0
    for name, document in documents:
        slow: dict[str, object] | str
        try:
            slow = validate_slowly(document, name, "doc")
        except VaError as error:
            slow = error.message
        try:
            fast: dict[str, object] | str = validate(document, name, "doc")
            accepted += 1
        except VaError as error:
            fast = error.message
        assert fast == slow, (name, document)
    assert accepted > len(documents) // 2  # most variants are valid: the fast path is what they took


def test_a_job_file_with_a_byte_order_mark_is_read(files: Media) -> None:
    """Windows editors (Notepad) write UTF-8 with a byte order mark: the job is read as without one."""
    job = files.job()
    marked = job.with_name("marked.json")
    marked.write_bytes(b"\xef\xbb\xbf" + job.read_bytes())
    assert load_job(marked).data == load_job(job).data
