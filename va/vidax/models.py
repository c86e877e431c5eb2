"""What the routes answer: one response model per answer, so the OpenAPI document says each field.

Parts whose shape belongs to another document (a run's effective parameters, the events a run writes,
ComfyUI's details of a phase) are JSON values; the fields the API itself makes are typed here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from va.manifest import build_manifest
from va.vidax.jobs import JobRecord, JobStatus
from va.workdir import Workdir

JsonObject = dict[str, JsonValue]


class Answer(BaseModel):
    """Every answer: its fields are exactly those declared."""

    model_config = ConfigDict(extra="forbid")


class Health(Answer):
    status: Literal["ok"]
    version: str


class Ready(Answer):
    ready: bool
    queued: int
    running: int
    max_queued_jobs: int


class Progress(Answer):
    phases_done: int
    phases_total: int
    #: batches and frames done, for a job that uses ComfyUI (null otherwise).
    comfyui: JsonObject | None = None


class ExitStatus(Answer):
    code: int | None
    name: str | None = None
    message: str | None


class FinalVideo(Answer):
    available: bool
    url: str
    bytes: int | None


class JobView(Answer):
    """A job: status, current phase, progress, timings, and where its video is."""

    id: str
    status: JobStatus
    run_id: str | None
    created_at: str
    queued_at: str | None
    started_at: str | None
    ended_at: str | None
    phase: str | None
    progress: Progress
    timings: dict[str, float | None]
    exit_status: ExitStatus | None
    final: FinalVideo
    webhook_url: str | None


class Retake(Answer):
    """A retake recorded and its job queued: the segment remade, its take, and where the previous final
    video was kept (null when there was none)."""

    job: JobView
    segment: str
    start_seconds: float
    end_seconds: float
    take: int
    kept_final: str | None


class JobList(Answer):
    jobs: list[JobView]


class Logs(Answer):
    events: list[JsonObject]
    next: int


class ManifestFinal(Answer):
    path: str
    exists: bool
    bytes: int | None


class Manifest(BaseModel):
    """The run's manifest.json (docs/OUTPUT_CONTRACT.md). A field the manifest gains must be added
    here too (tests/vidax/test_jobs.py compares the answer with the file)."""

    manifest_version: int
    run_id: str
    run_status: str
    exit_status: ExitStatus | None
    workdir: str
    job: str | None
    #: What the plan of the latest attempt makes (va.plan.plan_fingerprint); None before it is written.
    plan_fingerprint: str | None
    created_at: str
    updated_at: str
    attempts: int
    last_attempt: JsonObject
    phases: dict[str, JsonObject]
    seeds: JsonObject | None
    audio_input_duration_seconds: float | None
    audio_duration_seconds: float | None
    buffer: JsonObject | None
    visual_target_duration_seconds: float | None
    fps: float | None
    target_frames: int | None
    #: The voice's loudness normalization (target; measured before and after), None when not asked.
    loudness: JsonObject | None
    inputs: JsonObject | None
    effective_params: JsonObject | None
    tools: JsonObject | None
    cleanup: JsonObject | None
    final: ManifestFinal


class AssetOutcome(Answer):
    id: str
    status: str
    destination: str
    message: str | None = None
    error: ExitStatus | None = None


class InstallReport(Answer):
    state_dir: str
    assets_manifest: str | None
    files: dict[str, str]
    assets: list[AssetOutcome]
    downloaded: int


class ComfyServerHealth(Answer):
    url: str
    ok: bool
    endpoint: str | None
    comfyui_version: str | None
    message: str


class ComfyHealth(Answer):
    ok: bool
    url: str
    endpoint: str | None
    comfyui_version: str | None
    #: Every server of the pool (``comfyui.servers`` of vidax.json, else ``comfyui.url``).
    servers: list[ComfyServerHealth]
    #: The servers that answer report more than one ComfyUI version.
    mixed_versions: bool


class ComfyStart(Answer):
    started: bool
    already_running: bool
    url: str
    comfyui_version: str | None
    pid: int | None = None


def view_of(record: JobRecord) -> JobView:
    """A job (its record brought up to date) as the API shows it, from its record and manifest."""
    manifest = build_manifest(Workdir(Path(record.workdir))) or {}
    phases = manifest.get("phases", {})
    finished = [name for name, phase in phases.items() if phase["status"] in ("done", "skipped")]
    final = manifest.get("final") or {}
    exit_status = manifest.get("exit_status") or (
        {"code": record.exit_code, "message": record.message}
        if record.exit_code is not None or record.message
        else None
    )
    return JobView(
        id=record.id,
        status=record.status,
        run_id=manifest.get("run_id"),
        created_at=record.created_at,
        queued_at=record.queued_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
        phase=next((name for name, phase in phases.items() if phase["status"] == "running"), None),
        progress=Progress(
            phases_done=len(finished),
            phases_total=len(phases) or 4,
            comfyui=phases.get("comfyui", {}).get("progress"),
        ),
        timings={name: phase.get("seconds") for name, phase in phases.items()},
        exit_status=ExitStatus.model_validate(exit_status) if exit_status else None,
        final=FinalVideo(
            available=bool(final.get("exists")), url=f"/jobs/{record.id}/final", bytes=final.get("bytes")
        ),
        webhook_url=record.webhook_url,
    )
