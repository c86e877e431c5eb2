"""``/jobs`` and ``/produce``: create, start, watch, cancel and resume jobs; fetch their results."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from annotated_types import MaxLen, MinLen
from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from va.errors import VaError
from va.events import read_events
from va.job import load_job
from va.manifest import Manifest, build_manifest
from va.produce import ProduceRequest, build_job
from va.records import JsonObject
from va.retake import RetakeRequest
from va.schema import schema_path
from va.vidax.deps import ApiKey, SettingsDep, StoreDep
from va.vidax.errors import ApiError, error_responses
from va.vidax.intake import accept_job, confine, confine_webhook_url
from va.vidax.jobs import JobRecord, JobStatus, JobStore
from va.vidax.models import JobList, JobView, Logs, Retake, view_of
from va.vidax.settings import Settings
from va.vidax.streams import event_stream
from va.workdir import Workdir

router = APIRouter(tags=["jobs"], dependencies=[ApiKey], responses=error_responses(401, 422))

#: Where the job schema's own definitions (its ``$defs``) go in the OpenAPI document: its components, by
#: this prefix and their names, so a reference resolves from anywhere in the document.
JOB_DEFINITION_PREFIX = "JobSchema_"


def _in_components(node: Any) -> Any:
    """``node`` with every ``#/$defs/NAME`` reference made one to the OpenAPI document's components."""
    if isinstance(node, dict):
        return {
            key: f"#/components/schemas/{JOB_DEFINITION_PREFIX}{value.removeprefix('#/$defs/')}"
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
            else _in_components(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_in_components(item) for item in node]
    return node


_JOB_DOCUMENT = json.loads(schema_path("job").read_text(encoding="utf-8"))
#: The job schema (va/schemas/job.schema.json) as the documented body of ``POST /jobs``, and its
#: definitions as components (``JOB_DEFINITION_PREFIX``; the server adds them to the document).
JOB_SCHEMA = _in_components({k: v for k, v in _JOB_DOCUMENT.items() if k not in ("$schema", "$id", "$defs")})
JOB_DEFINITIONS = {
    f"{JOB_DEFINITION_PREFIX}{name}": _in_components(value)
    for name, value in _JOB_DOCUMENT.get("$defs", {}).items()
}


@dataclass(frozen=True)
class ProduceBody(ProduceRequest):
    """The fields of ``va produce`` (va.produce.ProduceRequest) as JSON, and the webhook of the job; input
    paths are server-side and inside ``input_roots``."""

    webhook_url: Annotated[str | None, MinLen(1), MaxLen(2048)] = None


def job_view(store: JobStore, record: JobRecord) -> JobView:
    """A job as the API shows it, its record first brought up to date with its run."""
    return view_of(store.refresh(record))


#: Headers are typed without null (a header is there or not); an absent key is "".
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="The same key returns the same job; the same key with another request is a 422",
    ),
]
WebhookUrl = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=2048,
        description="POSTed, signed, when the job ends; one of webhooks.allowed_urls",
    ),
]


def request_digest(route: str, body: Any, webhook_url: str | None) -> str:
    """What makes two requests the same request, for ``Idempotency-Key``."""
    canonical = json.dumps([route, body, webhook_url], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_once(
    store: JobStore,
    settings: Settings,
    document: Callable[[], Any],
    *,
    digest: str,
    key: str | None,
    webhook_url: str | None,
    start: bool,
) -> tuple[JobRecord, bool]:
    """Accept and create a job (queued at once with ``start``), or with a known ``Idempotency-Key`` the
    job that key made; True when it was made now."""
    if key is not None and (earlier := store.find_idempotent(key, digest)) is not None:
        return earlier, False
    if start:  # refused before anything is made: a full queue leaves no job behind
        store.refuse_full_queue()
    if webhook_url is not None:
        confine_webhook_url(webhook_url, settings.webhooks.allowed_urls)
    accepted = accept_job(document(), settings.input_roots, settings.comfyui_urls, store.root)
    with store.lock:  # the key is looked up again and the job made in one step: one job per key
        if key is not None and (earlier := store.find_idempotent(key, digest)) is not None:
            return earlier, False
        idempotency = (key, digest) if key is not None else None
        record = store.create(accepted, webhook_url=webhook_url, idempotency=idempotency)
        return (store.enqueue(record.id, resume=False) if start else record), True


@router.post(
    "/jobs",
    status_code=201,
    responses={
        200: {"model": JobView, "description": "The job an earlier request with this Idempotency-Key made"},
        **error_responses(400, 413, 503),
    },
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": JOB_SCHEMA}}}},
)
def create_job(
    *,
    store: StoreDep,
    settings: SettingsDep,
    document: Annotated[dict[str, Any], Body(description="a job, schema 1")],
    response: Response,
    idempotency_key: IdempotencyKey = "",
    webhook_url: WebhookUrl = None,
) -> JobView:
    """Create a job from a job document (paths on the server, inside input_roots; comfyui.url, if given,
    one the config allows); it is not started."""
    digest = request_digest("/jobs", document, webhook_url)
    record, made = create_once(
        store,
        settings,
        lambda: document,
        digest=digest,
        key=idempotency_key or None,
        webhook_url=webhook_url,
        start=False,
    )
    response.status_code = 201 if made else 200
    return job_view(store, record)


@router.post(
    "/produce",
    status_code=202,
    responses={
        200: {"model": JobView, "description": "The job an earlier request with this Idempotency-Key made"},
        **error_responses(400, 413, 503),
    },
)
def produce(
    *,
    body: ProduceBody,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = "",
) -> JobView:
    """Create a job from the produce flags and start it (final file ``fertig.mp4``)."""

    def document() -> JsonObject:
        audio = confine(body.audio, settings.input_roots, "audio")
        start = confine(body.start, settings.input_roots, "start")
        try:
            return build_job(dataclasses.replace(body, audio=str(audio), start=str(start)))
        except VaError as exc:
            raise ApiError.from_va(exc) from exc

    digest = request_digest("/produce", dataclasses.asdict(body), body.webhook_url)
    record, made = create_once(
        store,
        settings,
        document,
        digest=digest,
        key=idempotency_key or None,
        webhook_url=body.webhook_url,
        start=True,
    )
    response.status_code = 202 if made else 200
    return job_view(store, record)


@router.post("/jobs/{job_id}/start", status_code=202, responses=error_responses(404, 409, 503))
def start_job(job_id: str, store: StoreDep) -> JobView:
    """Queue a created job; it starts when a run slot is free."""
    return job_view(store, store.enqueue(job_id, resume=False))


@router.get("/jobs")
def list_jobs(store: StoreDep, status: JobStatus | None = None) -> JobList:
    """Every job, oldest first, optionally only those of one status."""
    records = [store.refresh(r) for r in store.all()]
    return JobList(jobs=[view_of(r) for r in records if status is None or r.status == status])


@router.get("/jobs/{job_id}", responses=error_responses(404))
def get_job(job_id: str, store: StoreDep) -> JobView:
    """One job: status, phase, progress, timings."""
    return job_view(store, store.get(job_id))


@router.get("/jobs/{job_id}/manifest", responses=error_responses(404))
def get_manifest(job_id: str, store: StoreDep) -> Manifest:
    """The run's manifest.json (404 before the run started), as the run writes it."""
    record = store.get(job_id)
    manifest = build_manifest(Workdir(Path(record.workdir)))
    if manifest is None:
        raise ApiError(404, "NOT_FOUND", f"job {job_id} has not started yet; it has no manifest")
    return manifest


@router.get("/jobs/{job_id}/logs", responses=error_responses(404))
def get_logs(job_id: str, store: StoreDep, after: Annotated[int, Query(ge=0, le=10**9)] = 0) -> Logs:
    """Events of the run from line ``after`` on; ``next`` is the ``after`` of the following call."""
    record = store.get(job_id)
    events = read_events(Workdir(Path(record.workdir)).events)
    # Validated as JSON: an event carries more fields than the ones va.events.Event declares.
    return Logs.model_validate({"events": events[after:], "next": max(after, len(events))})


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The job's events as Server-Sent Events"},
        **error_responses(404),
    },
)
def stream_events(
    job_id: str,
    store: StoreDep,
    last_event_id: Annotated[
        int, Header(alias="Last-Event-ID", ge=0, le=10**9, description="Resume after this event (its id)")
    ] = 0,
) -> EventSourceResponse:
    """The run's events (``logs/events.jsonl``, progress included) as they are written, each with its
    line number as id; after the job has ended, one ``end`` event with the job, then the stream closes."""
    store.get(job_id)
    return EventSourceResponse(event_stream(store, job_id, last_event_id), ping=15)


@router.post("/jobs/{job_id}/cancel", responses=error_responses(404, 409))
def cancel_job(job_id: str, store: StoreDep) -> JobView:
    """Cancel a queued job or stop a running one (it can be resumed later)."""
    return job_view(store, store.cancel(job_id))


@router.post("/jobs/{job_id}/resume", status_code=202, responses=error_responses(404, 409, 503))
def resume_job(job_id: str, store: StoreDep) -> JobView:
    """Queue an interrupted, failed or cancelled job to continue from what exists."""
    return job_view(store, store.enqueue(job_id, resume=True))


class RetakeBody(BaseModel):
    """What ``va retake`` takes: a moment of the video, and optionally the new take's seed and prompt."""

    model_config = ConfigDict(extra="forbid")

    at: float = Field(ge=0, le=10**7, description="a moment of the video, in seconds")
    seed: int | None = Field(default=None, ge=0, le=2**64 - 1)
    prompt: str | None = Field(default=None, max_length=10000)


@router.post("/jobs/{job_id}/retake", status_code=202, responses=error_responses(400, 404, 409))
def retake_job(job_id: str, body: RetakeBody, store: StoreDep) -> Retake:
    """Remake the segment at a moment of a generation by segments (and, in a chain, those after it whose
    input changed), then join and encode again; the previous final is kept under a new name. A moment
    outside the video, or a job without segments, is a 400."""
    record, done = store.retake(job_id, RetakeRequest(body.at, body.seed, body.prompt))
    segment = done.segment
    return Retake(
        job=job_view(store, record),
        segment=segment.name,
        start_seconds=segment.start_seconds,
        end_seconds=segment.end_seconds,
        take=done.take,
        kept_final=None if done.kept_final is None else done.kept_final.name,
    )


@router.get(
    "/jobs/{job_id}/final",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The whole video"},
        206: {"content": {"video/mp4": {}}, "description": "The part a Range header asked for"},
        **error_responses(404, 400, 416),
    },
)
def get_final(job_id: str, store: StoreDep) -> FileResponse:
    """The finished video; HTTP Range requests let a browser play and seek it."""
    record = store.get(job_id)
    basename = load_job(record.job_file).basename
    final = Path(record.workdir) / basename
    if not final.is_file():
        raise ApiError(
            404, "NOT_FOUND", f"job {job_id} has no final video yet ({store.refresh(record).status})"
        )
    return FileResponse(final, media_type="video/mp4", filename=basename)
