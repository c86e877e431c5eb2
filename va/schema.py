"""JSON Schema validation with defaults filled in, and errors that name the field."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from va.errors import ExitCode, VaError, not_a_file

if TYPE_CHECKING:  # jsonschema words the errors of an invalid document; a valid one never loads it
    import jsonschema
    from jsonschema.protocols import Validator


def schema_path(name: str) -> Path:
    """Where the schema ``name`` (e.g. ``job``) lives: inside the package, shared by CLI and Snakefile."""
    return Path(str(resources.files("va") / "schemas" / f"{name}.schema.json"))


@cache
def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return loaded


def job_schema() -> dict[str, Any]:
    """The job schema (va/schemas/job.schema.json), parsed once."""
    return _schema("job")


def _with_defaults(validator_class: type[Validator]) -> type[Validator]:
    from jsonschema import validators  # noqa: PLC0415 - see TYPE_CHECKING above

    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(
        validator: Validator, properties: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    extended: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
        validator_class, {"properties": set_defaults}
    )
    return extended


@cache
def _defaulting_validator() -> type[Validator]:
    """jsonschema's Draft 2020-12 validator that fills in defaults as it checks, made once."""
    from jsonschema import Draft202012Validator  # noqa: PLC0415 - see TYPE_CHECKING above

    return _with_defaults(Draft202012Validator)


@cache
def _fast_validator(name: str) -> jsonschema_rs.Validator:
    """The schema ``name`` compiled by jsonschema-rs: it says whether a document is valid in
    microseconds, where jsonschema takes a millisecond a job (a batch of 1,000 jobs spent most of its
    loading there). jsonschema still finds and words the problem of a document that is not valid."""
    return jsonschema_rs.validator_for(_schema(name))


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    """The subschema a local ``$ref`` (``#/$defs/segment``) points to."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported in the schemas: {ref}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    resolved: dict[str, Any] = node
    return resolved


def fill_defaults(root: dict[str, Any], node: dict[str, Any], instance: Any) -> None:
    """Fill in the defaults of ``node`` (a part of the schema ``root``) in ``instance``, in place, where the
    defaulting validator would: each property's default where the property is missing, then the same in
    each property present (``properties`` and ``additionalProperties``), each item of an array and what a
    ``$ref`` points to. The schemas keep their
    defaults where this reaches (tests/test_schema.py checks it)."""
    if "$ref" in node:
        fill_defaults(root, _resolve(root, node["$ref"]), instance)
    if isinstance(instance, dict):
        properties = node.get("properties", {})
        for name, subschema in properties.items():
            if "default" in subschema:
                instance.setdefault(name, copy.deepcopy(subschema["default"]))
        for name, subschema in properties.items():
            if name in instance:
                fill_defaults(root, subschema, instance[name])
        others = node.get("additionalProperties")
        if isinstance(others, dict):
            for name, value in instance.items():
                if name not in properties:
                    fill_defaults(root, others, value)
    elif isinstance(instance, list) and isinstance(node.get("items"), dict):
        for item in instance:
            fill_defaults(root, node["items"], item)


#: Fields whose values are never echoed in an error (a key must not reach a terminal or a log).
SECRET_FIELD = re.compile(r"(^|_)(api_keys?|keys?|secret|token|password)$", re.IGNORECASE)

#: What a value breaking each kind of rule must be, said without showing the value.
EXPECTED = {
    "type": "of type {validator_value}",
    "minLength": "at least {validator_value} characters long",
    "maxLength": "at most {validator_value} characters long",
    "pattern": "of the form {validator_value}",
    "enum": "one of {validator_value}",
    "maxItems": "a list of at most {validator_value} items",
    "minItems": "a list of at least {validator_value} items",
}
#: The longest error line that may echo the value it is about; a longer one (a list of 20,000 segments)
#: says what the value must be and how big it is instead.
ECHO_LIMIT = 200


def describe_error(error: jsonschema.ValidationError) -> str:
    """One line for a schema error, starting with the dotted path of the field. The value of a secret
    field (an API key) is never shown."""
    where = ".".join(str(part) for part in error.absolute_path)
    prefix = f"{where}: " if where else ""
    if any(SECRET_FIELD.search(str(part)) for part in error.absolute_path if not isinstance(part, int)):
        expected = EXPECTED.get(str(error.validator), "valid ({validator} {validator_value})")
        text = expected.format(validator=error.validator, validator_value=error.validator_value)
        return prefix + f"must be {text} (the value is not shown)"
    if error.validator == "additionalProperties":
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed) if isinstance(error.instance, dict) else []
        return prefix + "unknown key " + ", ".join(repr(key) for key in unknown)
    if error.validator == "pattern" and isinstance(error.schema, dict) and error.schema.get("description"):
        return prefix + f"{error.instance!r} is not {error.schema['description']}"
    if error.validator == "then":
        return prefix + "seed is required when seed_policy is 'fixed'"
    if len(error.message) > ECHO_LIMIT:
        expected = EXPECTED.get(str(error.validator), "valid ({validator} {validator_value})")
        text = expected.format(validator=error.validator, validator_value=error.validator_value)
        size = f" (it has {len(error.instance)} items)" if isinstance(error.instance, list | dict) else ""
        return prefix + f"must be {text}{size}"[:ECHO_LIMIT]
    return prefix + error.message


#: How deep a config or job may nest; the schemas need far less, and a deeper document is an attack.
MAX_DEPTH = 32


def check_plain_values(data: Any, source: str) -> None:
    """Refuse what JSON Schema lets through but no setting can mean: NaN and infinities (Python's JSON
    reader accepts them), and nesting deeper than ``MAX_DEPTH``. Walked without recursion."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, where = stack.pop()
        field = ".".join(where) or "(top)"
        if len(where) > MAX_DEPTH:
            message = f"{source}: {field[:80]}...: nested deeper than {MAX_DEPTH} levels"
            raise VaError(ExitCode.VALIDATION_FAILED, message)
        if isinstance(value, float) and not math.isfinite(value):
            raise VaError(ExitCode.VALIDATION_FAILED, f"{source}: {field}: {value} is not a finite number")
        if isinstance(value, dict):
            stack.extend((item, (*where, str(key))) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, (*where, str(index))) for index, item in enumerate(value))


def validate(data: Any, name: str, source: str) -> dict[str, Any]:
    """Validate ``data`` against schema ``name`` and return a copy with defaults filled in.

    The first problem (the shallowest) is a ``VALIDATION_FAILED`` naming ``source`` and the field.
    """
    if not isinstance(data, dict):
        raise VaError(ExitCode.VALIDATION_FAILED, f"{source}: must be a JSON object")
    check_plain_values(data, source)
    schema = _schema(name)
    document = copy.deepcopy(data)
    fill_defaults(schema, schema, document)
    if _fast_validator(name).is_valid(document):
        return document
    return validate_slowly(data, name, source)


def validate_slowly(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    """``validate`` by jsonschema's defaulting validator alone: what finds and words the first problem of
    a document the fast path refused (and what the fast path must agree with: tests/test_schema.py)."""
    document = copy.deepcopy(data)
    errors = sorted(
        _defaulting_validator()(_schema(name)).iter_errors(document),
        key=lambda error: (len(error.absolute_path), list(map(str, error.absolute_path))),
    )
    if errors:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{source}: {describe_error(errors[0])}")
    return document


def load_json_file(path: Path, what: str) -> Any:
    """Read a JSON file; a missing file is ``INPUT_NOT_FOUND``, bad JSON ``VALIDATION_FAILED``."""
    if not path.is_file():
        if path.exists() or path.is_symlink():  # a folder, a device or pipe, or a link to no file
            raise not_a_file(what, path)
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"{what} not found: {path}")
    try:
        # utf-8-sig: a byte order mark, as Windows editors write one, is read past (RFC 8259 allows it).
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: nested too deeply to read") from exc
    except PermissionError as exc:
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"{what} not readable (permission denied): {path}") from exc
