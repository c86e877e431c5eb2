"""``/jobs`` and ``/produce``: create, start, watch, cancel and resume jobs; fetch their results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from va.errors import VaError
from va.events import read_events
from va.manifest import build_manifest
from va.produce import PRODUCE_BASENAME, ProduceRequest, build_job
from va.schema import schema_path
from va.vidax.deps import ApiKey, SettingsDep, StoreDep
from va.vidax.errors import ApiError, error_responses
from va.vidax.intake import accept_job, confine
from va.vidax.jobs import JobRecord, JobStatus, JobStore
from va.vidax.settings import Settings
from va.workdir import Workdir

router = APIRouter(tags=["jobs"], dependencies=[ApiKey], responses=error_responses(401, 422))

#: The job schema (va/schemas/job.schema.json) as the documented body of ``POST /jobs``.
JOB_SCHEMA = {
    key: value
    for key, value in json.loads(schema_path("job").read_text(encoding="utf-8")).items()
    if key not in ("$schema", "$id")
}


class ProduceBody(BaseModel):
    """The flags of ``va produce``, as JSON; input paths are server-side and inside ``input_roots``."""

    model_config = ConfigDict(extra="forbid")

    audio: str = Field(min_length=1, max_length=4096)
    start: str = Field(min_length=1, max_length=4096)
    prompt: str = Field(max_length=10000)
    neg: str = Field(default="", max_length=10000)
    pre: float = Field(default=0.0, ge=0, le=3600)
    post: float = Field(default=0.0, ge=0, le=3600)
    width: int | None = Field(default=None, ge=16, le=8192)
    height: int | None = Field(default=None, ge=16, le=8192)
    fps: int | None = Field(default=None, ge=1, le=120)
    seed: int | None = Field(default=None, ge=0, le=2**64 - 1)
    lipsync: Literal["on", "off"] | None = None
    lipsync_provider: str | None = Field(default=None, max_length=200)
    no_comfyui: bool = False
    cleanup: Literal["keep", "intermediates"] | None = None


def job_view(store: JobStore, record: JobRecord) -> dict[str, Any]:
    """A job as the API shows it: status, current phase, progress, timings, and where the video is."""
    record = store.refresh(record)
    manifest = build_manifest(Workdir(Path(record.workdir))) or {}
    phases = manifest.get("phases", {})
    finished = [name for name, phase in phases.items() if phase["status"] in ("done", "skipped")]
    progress: dict[str, Any] = {"phases_done": len(finished), "phases_total": len(phases) or 4}
    if "progress" in phases.get("comfyui", {}):
        progress["comfyui"] = phases["comfyui"]["progress"]
    final = manifest.get("final") or {}
    return {
        "id": record.id,
        "status": record.status,
        "run_id": manifest.get("run_id"),
        "created_at": record.created_at,
        "queued_at": record.queued_at,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "phase": next((name for name, phase in phases.items() if phase["status"] == "running"), None),
        "progress": progress,
        "timings": {name: phase.get("seconds") for name, phase in phases.items()},
        "exit_status": manifest.get("exit_status")
        or (
            {"code": record.exit_code, "message": record.message}
            if record.exit_code is not None or record.message
            else None
        ),
        "final": {
            "available": bool(final.get("exists")),
            "url": f"/jobs/{record.id}/final",
            "bytes": final.get("bytes"),
        },
    }


def _create(store: JobStore, settings: Settings, document: Any) -> JobRecord:
    accepted = accept_job(document, settings.input_roots, settings.comfyui_urls, store.root)
    return store.create(accepted)


@router.post(
    "/jobs",
    status_code=201,
    responses=error_responses(400, 413, 503),
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": JOB_SCHEMA}}}},
)
def create_job(
    store: StoreDep,
    settings: SettingsDep,
    document: Annotated[dict[str, Any], Body(description="a job, schema 1")],
) -> dict[str, Any]:
    """Create a job from a job document (paths on the server, inside input_roots; comfyui.url, if given,
    one the config allows); it is not started."""
    return job_view(store, _create(store, settings, document))


@router.post("/produce", status_code=202, responses=error_responses(400, 413, 503))
def produce(body: ProduceBody, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    """Create a job from the produce flags and start it (final file ``fertig.mp4``)."""
    audio = confine(body.audio, settings.input_roots, "audio")
    start = confine(body.start, settings.input_roots, "start")
    request = ProduceRequest(
        audio=audio, start=start, prompt=body.prompt, negative=body.neg, pre_seconds=body.pre,
        post_seconds=body.post, width=body.width, height=body.height, fps=body.fps, seed=body.seed,
        lipsync=body.lipsync, lipsync_provider=body.lipsync_provider, comfyui=not body.no_comfyui,
        cleanup=body.cleanup,
    )  # fmt: skip
    try:
        document = build_job(request)
    except VaError as exc:
        raise ApiError.from_va(exc) from exc
    record = _create(store, settings, document)
    return job_view(store, store.enqueue(record.id, resume=False))


@router.post("/jobs/{job_id}/start", status_code=202, responses=error_responses(404, 409))
def start_job(job_id: str, store: StoreDep) -> dict[str, Any]:
    """Queue a created job; it starts when a run slot is free."""
    return job_view(store, store.enqueue(job_id, resume=False))


@router.get("/jobs")
def list_jobs(store: StoreDep, status: JobStatus | None = None) -> dict[str, Any]:
    """Every job, oldest first, optionally only those of one status."""
    records = [store.refresh(r) for r in store.all()]
    return {"jobs": [job_view(store, r) for r in records if status is None or r.status == status]}


@router.get("/jobs/{job_id}", responses=error_responses(404))
def get_job(job_id: str, store: StoreDep) -> dict[str, Any]:
    """One job: status, phase, progress, timings."""
    return job_view(store, store.get(job_id))


@router.get("/jobs/{job_id}/manifest", responses=error_responses(404))
def get_manifest(job_id: str, store: StoreDep) -> dict[str, Any]:
    """The run's manifest.json (404 before the run started)."""
    record = store.get(job_id)
    manifest = build_manifest(Workdir(Path(record.workdir)))
    if manifest is None:
        raise ApiError(404, "NOT_FOUND", f"job {job_id} has not started yet; it has no manifest")
    return manifest


@router.get("/jobs/{job_id}/logs", responses=error_responses(404))
def get_logs(
    job_id: str, store: StoreDep, after: Annotated[int, Query(ge=0, le=10**9)] = 0
) -> dict[str, Any]:
    """Events of the run from line ``after`` on; ``next`` is the ``after`` of the following call."""
    record = store.get(job_id)
    events = read_events(Workdir(Path(record.workdir)).events)
    return {"events": events[after:], "next": max(after, len(events))}


@router.post("/jobs/{job_id}/cancel", responses=error_responses(404, 409))
def cancel_job(job_id: str, store: StoreDep) -> dict[str, Any]:
    """Cancel a queued job or stop a running one (it can be resumed later)."""
    return job_view(store, store.cancel(job_id))


@router.post("/jobs/{job_id}/resume", status_code=202, responses=error_responses(404, 409))
def resume_job(job_id: str, store: StoreDep) -> dict[str, Any]:
    """Queue an interrupted, failed or cancelled job to continue from what exists."""
    return job_view(store, store.enqueue(job_id, resume=True))


@router.get(
    "/jobs/{job_id}/final",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The whole video"},
        206: {"content": {"video/mp4": {}}, "description": "The part a Range header asked for"},
        **error_responses(404),
    },
)
def get_final(job_id: str, store: StoreDep) -> FileResponse:
    """The finished video; HTTP Range requests let a browser play and seek it."""
    record = store.get(job_id)
    basename = json.loads(record.job_file.read_text()).get("output", {}).get("basename", PRODUCE_BASENAME)
    final = Path(record.workdir) / basename
    if not final.is_file():
        raise ApiError(
            404, "NOT_FOUND", f"job {job_id} has no final video yet ({store.refresh(record).status})"
        )
    return FileResponse(final, media_type="video/mp4", filename=basename)
