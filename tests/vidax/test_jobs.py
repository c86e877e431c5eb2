"""``/jobs`` and ``/produce`` (va/vidax/routes/jobs.py, va/vidax/jobs.py).

The states a job passes through without running are checked with the scheduler off; only what a run
alone shows runs a job: one from creation through a cancel and a resume to its final video. ``/produce``
runs through the real server in test_server.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MARKER, RULE_FFMPEG, Media, ffprobe_streams, slow_ffmpeg, wait_no_process_marked
from tests.vidax.conftest import ENDED, HEADERS, assert_error, job_document, until, wait_for
from va.atomic import write_text_atomic
from va.errors import ExitCode
from va.manifest import build_manifest
from va.processes import ProcessId
from va.workdir import Workdir


def produce_body(files: Media) -> dict[str, Any]:
    return {
        "audio": str(files.root / "voice.wav"),
        "start": str(files.root / "start.png"),
        "prompt": "push-in",
        "fps": 24,
        "seed": 9,
        "no_comfyui": True,
        "lipsync": "on",
        "lipsync_provider": "audiogram",
    }


def ids(client: TestClient, status: str) -> list[str]:
    return [job["id"] for job in client.get(f"/jobs?status={status}", headers=HEADERS).json()["jobs"]]


def test_a_created_job_waits_until_it_is_started(client: TestClient, files: Media) -> None:
    created = client.post("/jobs", json=job_document(files), headers=HEADERS)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["status"] == "created" and not created.json()["final"]["available"]
    assert_error(client.get(f"/jobs/{job_id}/manifest", headers=HEADERS), 404, "NOT_FOUND", "not started")
    assert_error(client.get(f"/jobs/{job_id}/final", headers=HEADERS), 404, "NOT_FOUND", "created")
    assert client.get(f"/jobs/{job_id}/logs", headers=HEADERS).json() == {"events": [], "next": 0}
    assert_error(client.post(f"/jobs/{job_id}/cancel", headers=HEADERS), 409, "CONFLICT")
    assert_error(client.post(f"/jobs/{job_id}/resume", headers=HEADERS), 409, "RESUME_NOT_POSSIBLE")
    assert ids(client, "created") == [job_id]


def test_a_started_job_queues_and_can_be_cancelled(client: TestClient, files: Media) -> None:
    """No scheduler runs here: the job stays queued until it is cancelled."""
    job_id = client.post("/jobs", json=job_document(files), headers=HEADERS).json()["id"]
    started = client.post(f"/jobs/{job_id}/start", headers=HEADERS)
    assert started.status_code == 202 and started.json()["status"] == "queued"
    assert_error(client.post(f"/jobs/{job_id}/start", headers=HEADERS), 409, "CONFLICT", "already queued")
    assert_error(client.post(f"/jobs/{job_id}/resume", headers=HEADERS), 409, "CONFLICT", "already queued")
    assert ids(client, "queued") == [job_id] and ids(client, "created") == []
    cancelled = client.post(f"/jobs/{job_id}/cancel", headers=HEADERS)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_error(client.post(f"/jobs/{job_id}/cancel", headers=HEADERS), 409, "CONFLICT", "cancelled")
    assert_error(client.post(f"/jobs/{job_id}/start", headers=HEADERS), 409, "CONFLICT", "resume it")
    resumed = client.post(f"/jobs/{job_id}/resume", headers=HEADERS)
    assert resumed.status_code == 202 and resumed.json()["status"] == "queued"


def test_a_retake_needs_a_run_that_ended_with_segments(client: TestClient, files: Media) -> None:
    """POST /jobs/{id}/retake: a job that has not run is a 409; one whose run planned no segments a 400
    (the retake itself, a run with segments, is in tests/comfyui/test_segment_runs.py through va retake)."""
    job_id = client.post("/jobs", json=job_document(files), headers=HEADERS).json()["id"]
    assert_error(
        client.post(f"/jobs/{job_id}/retake", json={"at": 1}, headers=HEADERS),
        409,
        "CONFLICT",
        "a retake needs a run that ended",
    )
    client.post(f"/jobs/{job_id}/start", headers=HEADERS)
    client.post(f"/jobs/{job_id}/cancel", headers=HEADERS)
    assert_error(
        client.post(f"/jobs/{job_id}/retake", json={"at": 1}, headers=HEADERS), 400, "USAGE", "no run planned"
    )
    assert_error(
        client.post(f"/jobs/{job_id}/retake", json={"at": -1}, headers=HEADERS), 422, "VALIDATION_FAILED"
    )
    assert client.get(f"/jobs/{job_id}", headers=HEADERS).json()["status"] == "cancelled"


def plant_record(client: TestClient, files: Media, **fields: Any) -> str:
    """A created job whose record on disk is then changed by ``fields`` (as a crash or an edit would)."""
    job_id: str = client.post("/jobs", json=job_document(files), headers=HEADERS).json()["id"]
    path = Path(client.app.state.store.root) / job_id / "vidax-job.json"  # type: ignore[attr-defined]
    # Replaced whole, as an editor saves: the running scheduler never reads it half-written.
    write_text_atomic(path, json.dumps({**json.loads(path.read_text()), **fields}))
    return job_id


def test_a_bad_record_is_marked_error_and_skipped(client: TestClient, files: Media) -> None:
    unknown = plant_record(client, files, bogus=1)
    broken = plant_record(client, files)
    folder = Path(client.app.state.store.root) / broken  # type: ignore[attr-defined]
    (folder / "vidax-job.json").write_text("{not json")
    listed = client.get("/jobs", headers=HEADERS)
    assert listed.status_code == 200, listed.text
    assert {job["id"] for job in listed.json()["jobs"]} == {unknown, broken}
    assert set(ids(client, "error")) == {unknown, broken}
    view = client.get(f"/jobs/{unknown}", headers=HEADERS).json()
    assert (
        view["status"] == "error"
        and "bogus: Extra inputs are not permitted" in view["exit_status"]["message"]
    )
    assert (folder / "vidax-job.corrupt.json").read_text() == "{not json"  # kept for the operator
    assert_error(client.post(f"/jobs/{broken}/start", headers=HEADERS), 409, "CONFLICT", "error")
    assert_error(client.post(f"/jobs/{broken}/resume", headers=HEADERS), 409, "RESUME_NOT_POSSIBLE")


def test_a_run_killed_before_it_recorded_anything_is_interrupted_130(
    client: TestClient, files: Media
) -> None:
    """The run's ``va`` ended by SIGTERM in its first instant (a cancel right after the start), before it
    could record or answer anything: the job's exit status is 130 with a message, not -15."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process.terminate()
    process.wait()
    job_id = plant_record(client, files, status="running")
    client.app.state.store.processes[job_id] = process  # type: ignore[attr-defined]
    view = client.get(f"/jobs/{job_id}", headers=HEADERS).json()
    assert view["status"] == "interrupted"
    assert view["exit_status"]["code"] == 130
    assert view["exit_status"]["message"] == "stopped by signal 15 before the run started"


def test_a_stale_pid_is_never_signalled(client: TestClient, files: Media) -> None:
    """A ``running`` record whose pid now belongs to another process (its start time differs): the job
    counts as interrupted, and cancelling it signals nothing."""
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        identity = ProcessId.of(stranger.pid)
        assert identity is not None
        job_id = plant_record(
            client, files, status="running", pid=stranger.pid, pid_started=identity.start - 1
        )
        assert_error(client.post(f"/jobs/{job_id}/cancel", headers=HEADERS), 409, "CONFLICT", "interrupted")
        assert client.get(f"/jobs/{job_id}", headers=HEADERS).json()["status"] == "interrupted"
        assert stranger.poll() is None  # not signalled
    finally:
        stranger.kill()
        stranger.wait()


def test_the_same_idempotency_key_returns_the_same_job(client: TestClient, files: Media) -> None:
    first = client.post("/jobs", json=job_document(files), headers={**HEADERS, "Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text
    again = client.post("/jobs", json=job_document(files), headers={**HEADERS, "Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = job_document(files, buffer={"pre_seconds": 1.0})
    reused = client.post("/jobs", json=other, headers={**HEADERS, "Idempotency-Key": "k-1"})
    assert_error(reused, 422, "IDEMPOTENCY_KEY_REUSED", first.json()["id"])
    produced = [
        client.post("/produce", json=produce_body(files), headers={**HEADERS, "Idempotency-Key": "k-2"})
        for _ in range(2)
    ]
    assert [answer.status_code for answer in produced] == [202, 200]
    assert produced[0].json()["id"] == produced[1].json()["id"] and produced[1].json()["status"] == "queued"
    assert len(client.get("/jobs", headers=HEADERS).json()["jobs"]) == 2
    assert client.post("/jobs", json=job_document(files), headers=HEADERS).status_code == 201  # no key


def read_stream(client: TestClient, job_id: str, last_event_id: int | None = None) -> list[dict[str, str]]:
    """The Server-Sent Events of ``/jobs/{id}/events`` until the stream closes, as field dicts."""
    headers = {**HEADERS, **({"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {})}
    events: list[dict[str, str]] = []
    with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in stream.iter_lines():
            if not line.strip():
                if fields:
                    events.append(fields)
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = fields.get(name, "") + value.removeprefix(" ")
    return events


def test_events_stream_as_server_sent_events(client: TestClient, files: Media) -> None:
    """A job's events.jsonl as SSE, progress included, resumable with Last-Event-ID; ended jobs close
    the stream with an ``end`` event."""
    job_id = plant_record(client, files, status="failed", exit_code=12, message="not audio")
    logs = Path(client.app.state.store.root) / job_id / "logs"  # type: ignore[attr-defined]
    logs.mkdir()
    written = [
        {"ts": "2026-01-01T00:00:00.000Z", "kind": "rule_started", "rule": "prepare_audio", "n": 1},
        {"ts": "2026-01-01T00:00:01.000Z", "kind": "progress", "batch": 0, "value": 3, "max": 20},
        {"ts": "2026-01-01T00:00:02.000Z", "kind": "rule_failed", "rule": "prepare_audio"},
    ]
    (logs / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in written))
    events = read_stream(client, job_id)
    assert [json.loads(e["data"]) for e in events[:-1]] == written
    assert [(e["id"], e["event"]) for e in events[:-1]] == [
        ("1", "rule_started"),
        ("2", "progress"),
        ("3", "rule_failed"),
    ]
    assert events[-1]["event"] == "end" and json.loads(events[-1]["data"])["status"] == "failed"
    resumed = read_stream(client, job_id, last_event_id=2)
    assert [e.get("id") for e in resumed] == ["3", None] and resumed[-1]["event"] == "end"
    assert_error(client.get("/jobs/job-nope/events", headers=HEADERS), 404, "NOT_FOUND")


def test_produce_refuses_inputs_outside_the_roots(client: TestClient, files: Media) -> None:
    outside = client.post("/produce", json={**produce_body(files), "audio": "/etc/passwd"}, headers=HEADERS)
    assert_error(outside, 422, "INPUT_OUTSIDE_ROOTS", "audio")
    assert client.get("/jobs", headers=HEADERS).json()["jobs"] == []


@pytest.mark.whole_run
def test_a_job_from_creation_to_its_final_video(
    running_client: TestClient, files: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created, started, cancelled inside a rule, resumed, finished: then everything a finished job
    answers."""
    client = running_client
    # Neither a bad record nor a stale ``running`` one (its pid now another process's) holds up the queue.
    plant_record(client, files, bogus=1)
    stale = plant_record(client, files, status="running", pid=1, pid_started=-1)
    created = client.post("/jobs", json=job_document(files), headers=HEADERS)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    slow = slow_ffmpeg(
        files.root, 30, only=RULE_FFMPEG["prepare_audio"]
    )  # inside prepare_audio until cancelled
    monkeypatch.setenv("FFMPEG", str(slow))  # inherited by the runs the server starts
    marker = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, marker)  # so is this: it marks every process of the run
    assert client.post(f"/jobs/{job_id}/start", headers=HEADERS).status_code == 202
    assert_error(client.post(f"/jobs/{job_id}/start", headers=HEADERS), 409, "CONFLICT")

    def logs_now() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = client.get(f"/jobs/{job_id}/logs", headers=HEADERS).json()["events"]
        return events

    until(lambda: any(e["kind"] == "rule_started" for e in logs_now()), logs_now, seconds=60)  # a rule runs
    assert client.get(f"/jobs/{job_id}", headers=HEADERS).json()["status"] == "running"
    assert client.post(f"/jobs/{job_id}/cancel", headers=HEADERS).status_code == 200
    cancelled = wait_for(client, job_id, ENDED)
    assert cancelled["status"] == "cancelled", cancelled
    assert not cancelled["final"]["available"]
    wait_no_process_marked(marker, seconds=5)  # nothing of the cancelled run still runs
    monkeypatch.delenv("FFMPEG")
    assert client.post(f"/jobs/{job_id}/resume", headers=HEADERS).status_code == 202
    view = wait_for(client, job_id, ENDED)
    assert view["status"] == "succeeded", view
    assert view["final"]["available"] and view["timings"]["encode"] is not None
    manifest = client.get(f"/jobs/{job_id}/manifest", headers=HEADERS).json()
    assert manifest["run_status"] == "succeeded" and manifest["target_frames"] == 50
    assert manifest["attempts"] == 2

    workdir = Path(client.app.state.store.root) / job_id  # type: ignore[attr-defined]
    assert manifest == json.loads(json.dumps(build_manifest(Workdir(workdir))))  # every field answered

    logs = client.get(f"/jobs/{job_id}/logs", headers=HEADERS).json()
    assert logs["events"][0]["kind"] == "run_started"
    streamed = read_stream(client, job_id)
    assert [json.loads(e["data"]) for e in streamed[:-1]] == logs["events"]
    assert json.loads(streamed[-1]["data"]) == client.get(f"/jobs/{job_id}", headers=HEADERS).json()
    later = client.get(f"/jobs/{job_id}/logs?after={logs['next'] - 2}", headers=HEADERS).json()
    assert later["events"] == logs["events"][-2:] and later["next"] == logs["next"]

    whole = client.get(f"/jobs/{job_id}/final", headers=HEADERS)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert len(whole.content) == view["final"]["bytes"]
    part = client.get(f"/jobs/{job_id}/final", headers={**HEADERS, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    downloaded = tmp_path / "downloaded.mp4"
    downloaded.write_bytes(whole.content)
    assert int(ffprobe_streams(downloaded)["video"]["nb_read_frames"]) == 50  # 2 s at 25 fps

    # The run read the inputs the server checked, taken into its workdir (hard links here).
    job = json.loads((workdir / "job.json").read_text())
    assert job["input"]["audio"].endswith(f"{job_id}/inputs/audio.wav")
    assert os.path.samefile(job["input"]["audio"], files.root / "voice.wav")
    assert ids(client, "succeeded") == [job_id] and ids(client, "running") == []
    assert ids(client, "interrupted") == [stale] and len(ids(client, "error")) == 1
    assert_error(client.post(f"/jobs/{job_id}/resume", headers=HEADERS), 409, "RESUME_NOT_POSSIBLE")
    assert_error(client.post(f"/jobs/{job_id}/cancel", headers=HEADERS), 409, "CONFLICT", "succeeded")


def test_an_input_swapped_for_a_symlink_out_of_the_roots_is_refused_at_start(
    running_client: TestClient, files: Media, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Time of check, time of use: the inputs are confined again when the run starts."""
    secret = tmp_path_factory.mktemp("outside") / "secret.wav"
    secret.write_bytes((files.root / "voice.wav").read_bytes())
    mine = files.root / "mine.wav"
    mine.write_bytes(secret.read_bytes())
    document = job_document(files)
    document["input"]["audio"] = str(mine)
    job_id = running_client.post("/jobs", json=document, headers=HEADERS).json()["id"]
    mine.unlink()
    mine.symlink_to(secret)  # after the check, before the start
    assert running_client.post(f"/jobs/{job_id}/start", headers=HEADERS).status_code == 202
    view = wait_for(running_client, job_id, ENDED, seconds=30)
    assert view["status"] == "failed" and view["run_id"] is None, view
    assert "input.audio" in view["exit_status"]["message"] and "outside" in view["exit_status"]["message"]
    # Failed before any run: the record's own code, named as every exit status is.
    assert (view["exit_status"]["code"], view["exit_status"]["name"]) == (
        ExitCode.VALIDATION_FAILED,
        "VALIDATION_FAILED",
    ), view
    workdir = Path(running_client.app.state.store.root) / job_id  # type: ignore[attr-defined]
    assert not (workdir / "inputs" / "audio.wav").exists()
    # A FIFO swapped in is refused at once (opening it does not wait for a writer).
    mine.unlink()
    mine.write_bytes(secret.read_bytes())
    job_id = running_client.post("/jobs", json=document, headers=HEADERS).json()["id"]
    mine.unlink()
    os.mkfifo(mine)
    running_client.post(f"/jobs/{job_id}/start", headers=HEADERS)
    view = wait_for(running_client, job_id, ENDED, seconds=30)
    assert view["status"] == "failed" and "not a regular file" in view["exit_status"]["message"], view
    assert view["exit_status"]["name"] == ExitCode(view["exit_status"]["code"]).name, view
    # An input deleted before the start: not found, and named so.
    mine.unlink()
    mine.write_bytes(secret.read_bytes())
    job_id = running_client.post("/jobs", json=document, headers=HEADERS).json()["id"]
    mine.unlink()
    running_client.post(f"/jobs/{job_id}/start", headers=HEADERS)
    view = wait_for(running_client, job_id, ENDED, seconds=30)
    assert view["status"] == "failed" and view["exit_status"]["name"] == "INPUT_NOT_FOUND", view
    assert view["exit_status"]["code"] == ExitCode.INPUT_NOT_FOUND, view
