"""What the routes answer: one response model per answer, so the OpenAPI document says each field.

The fields the API itself makes are typed here; a run's manifest is the run's own record
(va.manifest.Manifest), answered as the run wrote it, and the events a run writes are JSON objects."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from va.errors import ExitCode
from va.manifest import ExitStatus, GenerationProgress, build_manifest
from va.records import JsonObject
from va.vidax.jobs import JobRecord, JobStatus
from va.workdir import Workdir


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
    comfyui: GenerationProgress | None = None


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


def code_name(code: int | None) -> str | None:
    """The name of an exit code (``10`` → ``VALIDATION_FAILED``); None for no code, or one va has not."""
    try:
        return ExitCode(code).name if code is not None else None
    except ValueError:
        return None


def view_of(record: JobRecord) -> JobView:
    """A job (its record brought up to date) as the API shows it, from its record and manifest."""
    manifest = build_manifest(Workdir(Path(record.workdir)))
    phases = manifest["phases"] if manifest else {}
    finished = [name for name, phase in phases.items() if phase["status"] in ("done", "skipped")]
    final = manifest["final"] if manifest else None
    exit_status: ExitStatus | None = (manifest["exit_status"] if manifest else None) or (
        {"code": record.exit_code, "name": code_name(record.exit_code), "message": record.message}
        if record.exit_code is not None or record.message
        else None
    )
    comfyui = phases.get("comfyui")
    return JobView(
        id=record.id,
        status=record.status,
        run_id=manifest["run_id"] if manifest else None,
        created_at=record.created_at,
        queued_at=record.queued_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
        phase=next((name for name, phase in phases.items() if phase["status"] == "running"), None),
        progress=Progress(
            phases_done=len(finished),
            phases_total=len(phases) or 4,
            comfyui=comfyui.get("progress") if comfyui else None,
        ),
        timings={name: phase.get("seconds") for name, phase in phases.items()},
        exit_status=exit_status,
        final=FinalVideo(
            available=bool(final and final["exists"]),
            url=f"/jobs/{record.id}/final",
            bytes=final["bytes"] if final else None,
        ),
        webhook_url=record.webhook_url,
    )
