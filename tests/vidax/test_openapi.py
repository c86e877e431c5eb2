"""The served OpenAPI document is true: every operation fuzzed from it (schemathesis, in-process),
every answer checked with all of schemathesis' checks (``--checks all``)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Comfy, Media
from tests.vidax.conftest import KEY, write_config
from va.vidax.server import create_app
from va.vidax.settings import load_settings

EXAMPLES = 9  # per operation and generation mode: about 290 calls, each of the 18 operations, deterministic
#: Only against a hang: about 20 s on a quiet machine, 60 s and more on a loaded one (its speed is no goal).
HANG_SECONDS = 300
#: schemathesis' default for valid data, and 422: what a job names must exist on the server.
ACCEPTED_OR_REFUSED_INPUT = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
#: schemathesis' default for invalid data, and 413.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]


@pytest.fixture
def fuzz_app(files: Media, comfy: Comfy, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The app without its scheduler (nothing runs), its ComfyUI the shared double (healthy, so
    /comfyui/start finds it running and starts nothing)."""
    comfyui = {"url": comfy.url, "command": ["false"], "start_timeout_seconds": 5}
    monkeypatch.setenv("VIDAX_CONFIG", str(write_config(tmp_path, [files.root], comfyui=comfyui)))
    return create_app(load_settings(), run_scheduler=False)


@pytest.mark.timeout(HANG_SECONDS)
def test_every_answer_conforms_to_the_openapi_document(fuzz_app: Any) -> None:
    # Imported here: schemathesis and hypothesis take seconds of CPU to import, and each pytest worker
    # imports every test module to collect it; only the worker that runs this test needs them (their
    # pytest plugins are off: pyproject's addopts).
    import schemathesis  # noqa: PLC0415
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415
    from schemathesis.checks import CHECKS, load_all_checks  # noqa: PLC0415
    from schemathesis.config import SchemathesisConfig  # noqa: PLC0415
    from schemathesis.generation import GenerationMode  # noqa: PLC0415

    # The key as the document's security scheme: schemathesis sends it, and leaves it out to check the 401.
    config = SchemathesisConfig.from_dict(
        {
            "auth": {"openapi": {"APIKeyHeader": {"api_key": KEY}}},
            # An invalid body can also be too large: refusing it with 413 is refusing it.
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSED}},
            # A job's inputs must be files on the server inside input_roots, which no schema can say:
            # a schema-valid job naming other paths is refused with 422, as documented.
            "operations": [
                {
                    "include-path-regex": "^/(jobs|produce)$",
                    "include-method": "POST",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_OR_REFUSED_INPUT}},
                }
            ],
        }
    )
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", fuzz_app, config=config, headers={"X-API-Key": KEY}
    )
    load_all_checks()
    checks = list(CHECKS.get_all())
    calls: dict[str, int] = {}
    statuses: set[int] = set()
    operations: list[Any] = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    for operation in operations:
        # What takes no parameters and no body has no invalid form: nothing negative to generate.
        invalid = any(True for _ in operation.iter_parameters()) or len(operation.body) > 0
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[: 2 if invalid else 1]:

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                statuses.add(case.call_and_validate(checks=checks).status_code)
                key = f"{case.method} {case.operation.path}"
                calls[key] = calls.get(key, 0) + 1

            check()
    assert len(calls) == len(operations) >= 15, calls  # every operation was exercised
    assert sum(calls.values()) >= 200, calls
    assert {200, 401, 404, 422} <= statuses, statuses  # with the key and without it


def test_every_answer_has_a_declared_model(fuzz_app: Any) -> None:
    """No answer is a free-form object: each JSON answer names a model whose fields are declared, and
    every operation declares the errors any route can answer."""
    document = fuzz_app.openapi()

    def free_form(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("additionalProperties") is True or any(free_form(v) for v in node.values())
        return isinstance(node, list) and any(free_form(v) for v in node)

    operations = [(path, op) for path, item in document["paths"].items() for op in item.values()]
    for path, operation in operations:
        assert {"413", "500"} <= set(operation["responses"]), path
        for status, answer in operation["responses"].items():
            schema = answer.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                assert "$ref" in schema, (path, status, schema)
    assert not free_form(document["components"]["schemas"])
    assert document["components"]["schemas"]["JobView"]["additionalProperties"] is False


def test_the_document_is_complete_enough_to_generate_a_client_from(fuzz_app: Any) -> None:
    """Every reference resolves inside the document (the job schema's ``$defs``, such as a segment, are
    components), a 405 names every method of the path, and an empty ``webhook_url`` is refused as the
    document says."""
    document = fuzz_app.openapi()

    def references(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [ref for value in node.values() for ref in references(value)]
        return [ref for value in node for ref in references(value)] if isinstance(node, list) else []

    def resolve(ref: str) -> Any:
        node = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    refs = references(document)
    assert "#/components/schemas/JobSchema_segment" in refs
    for ref in refs:
        assert ref.startswith("#/") and resolve(ref) is not None, ref
    with TestClient(fuzz_app) as client:
        answer = client.put("/jobs", headers={"X-API-Key": KEY})
        assert answer.status_code == 405
        assert {method.strip() for method in answer.headers["allow"].split(",")} >= {"GET", "POST"}
        produce = document["components"]["schemas"]["ProduceBody"]["properties"]["webhook_url"]
        assert all(
            option.get("minLength") == 1 for option in produce["anyOf"] if option.get("type") == "string"
        )
        empty = client.post("/jobs?webhook_url=", json={}, headers={"X-API-Key": KEY})
        assert empty.status_code == 422 and "webhook_url" in empty.json()["error"]["message"]
