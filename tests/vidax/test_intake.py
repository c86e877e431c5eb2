"""What a job may name (va/vidax/intake.py): inputs inside the input roots, a valid and decodable job,
only a ComfyUI the config allows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Media
from tests.vidax.conftest import HEADERS, ClientFactory, assert_error, job_document


def test_input_paths_are_confined_to_the_roots(
    client: TestClient, files: Media, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "voice.wav").write_bytes((files.root / "voice.wav").read_bytes())
    (files.root / "sneaky.wav").symlink_to(outside / "voice.wav")
    cases = [
        (str(outside / "voice.wav"), "INPUT_OUTSIDE_ROOTS"),
        (str(files.root / "sneaky.wav"), "INPUT_OUTSIDE_ROOTS"),
        (str(files.root / ".." / outside.name / "voice.wav"), "INPUT_OUTSIDE_ROOTS"),
        ("voice.wav", "VALIDATION_FAILED"),
    ]
    for audio, code in cases:
        document = job_document(files)
        document["input"]["audio"] = audio
        assert_error(client.post("/jobs", json=document, headers=HEADERS), 422, code, "input.audio")
    assert client.get("/jobs", headers=HEADERS).json()["jobs"] == []


@pytest.mark.parametrize(
    ("change", "code", "needle"),
    [
        ({"bogus": 1}, "VALIDATION_FAILED", "unknown key 'bogus'"),
        ({"determinism": {"seed_policy": "fixed"}}, "VALIDATION_FAILED", "seed"),
        ({"input": {"audio": "MISSING", "start": "START"}}, "INPUT_NOT_FOUND", "input.audio"),
        ({"input": {"audio": "TEXT", "start": "START"}}, "UNSUPPORTED_FORMAT", "input.audio"),
    ],
)
def test_bad_jobs_are_refused(
    client: TestClient, files: Media, change: dict[str, Any], code: str, needle: str
) -> None:
    (files.root / "notes.wav").write_text("not audio")
    document = job_document(files, **change)
    paths = {
        "MISSING": str(files.root / "nope.wav"),
        "TEXT": str(files.root / "notes.wav"),
        "START": str(files.root / "start.png"),
    }
    if "input" in change:
        document["input"] = {key: paths[value] for key, value in change["input"].items()}
    assert_error(client.post("/jobs", json=document, headers=HEADERS), 422, code, needle)


FOREIGN_URLS = [
    "http://169.254.169.254/latest",
    "http://127.0.0.1:8188@169.254.169.254/",
    "http://127.0.0.1:8189",
    "https://127.0.0.1:8188",
    "http://127.0.0.1:8188/../other",
    "http://127.0.0.1:8188?x=1",
    "http://127.0.0.1:8188\n",
    "http://127.0.0.1:99999",
]


def test_a_job_may_not_name_another_comfyui(client: TestClient, files: Media) -> None:
    for url in FOREIGN_URLS:
        response = client.post("/jobs", json=job_document(files, comfyui={"url": url}), headers=HEADERS)
        assert_error(response, 422, "VALIDATION_FAILED", "comfyui.url")
    assert client.get("/jobs", headers=HEADERS).json()["jobs"] == []


def test_a_job_may_name_the_configured_comfyui_or_an_allowed_one(
    make_client: ClientFactory, files: Media
) -> None:
    comfyui = {"url": "http://127.0.0.1:8188", "allowed_urls": ["https://gpu.example:8443/comfy/"]}
    with make_client(comfyui=comfyui) as client:
        for url in ("http://127.0.0.1:8188", "http://127.0.0.1:8188/", "https://GPU.example:8443/comfy"):
            created = client.post("/jobs", json=job_document(files, comfyui={"url": url}), headers=HEADERS)
            assert created.status_code == 201, created.text
        refused = client.post(
            "/jobs", json=job_document(files, comfyui={"url": "https://gpu.example/comfy"}), headers=HEADERS
        )
        assert_error(refused, 422, "VALIDATION_FAILED", "comfyui.url")
        assert len(client.get("/jobs", headers=HEADERS).json()["jobs"]) == 3


def test_a_nan_in_a_posted_job_is_refused(client: TestClient, files: Media) -> None:
    """Python's JSON reader (and so the request's) accepts NaN; no setting can mean it."""
    document = job_document(files)
    document["buffer"] = {"pre_seconds": 12345.5}
    body = json.dumps(document).replace("12345.5", "NaN").encode()
    answer = client.post("/jobs", content=body, headers={**HEADERS, "content-type": "application/json"})
    assert_error(answer, 422, "VALIDATION_FAILED", "buffer.pre_seconds: nan is not a finite number")
    assert client.get("/jobs", headers=HEADERS).json()["jobs"] == []


def test_a_timing_file_is_confined_and_read_once(
    client: TestClient, files: Media, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "timing.srt"
    outside.write_text("1\n00:00:00,000 --> 00:00:01,000\nHi\n", encoding="utf-8")
    refused = client.post("/jobs", json=job_document(files, timeline_file=str(outside)), headers=HEADERS)
    assert_error(refused, 422, "INPUT_OUTSIDE_ROOTS", "timeline_file")

    inside = files.root / "timing.srt"
    inside.write_text(outside.read_text(encoding="utf-8"), encoding="utf-8")
    created = client.post("/jobs", json=job_document(files, timeline_file=str(inside)), headers=HEADERS)
    assert created.status_code == 201, created.text
    inside.unlink()  # the job holds the segments themselves: the file is not read again
    job_id = created.json()["id"]
    job = json.loads((client.app.state.store.root / job_id / "job.json").read_text())  # type: ignore[attr-defined]
    assert "timeline_file" not in job and job["timeline"] == [{"start": 0.0, "end": 1.0, "caption": "Hi"}]
