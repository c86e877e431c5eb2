"""What the JSON records va writes and VIDAX returns are typed with, without loading pydantic: a rule's
process imports the records (the manifest is made again at each event), and pydantic is imported only
where it validates them, in VIDAX."""

from __future__ import annotations

from typing import TypeVar

from typing_extensions import TypeAliasType

#: Any JSON value; what ``json.loads`` returns.
JsonValue = TypeAliasType(
    "JsonValue", "list[JsonValue] | dict[str, JsonValue] | str | int | float | bool | None"
)
#: A JSON object whose shape another document owns (a job as its user wrote it, a tool's record).
JsonObject = dict[str, JsonValue]

_Record = TypeVar("_Record", bound=type)


def forbid_extra(record: _Record) -> _Record:
    """Mark a record so that pydantic, validating it, refuses a field it does not declare (pydantic's
    ``with_config(ConfigDict(extra="forbid"))``, spelled without importing pydantic)."""
    record.__pydantic_config__ = {"extra": "forbid"}  # type: ignore[attr-defined]
    return record
