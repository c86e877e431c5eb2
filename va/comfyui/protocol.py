"""The shapes of what passes between the ComfyUI package's modules: ComfyUI's JSON as a v0.26 server sends
and takes it (an API-format prompt, a ``/history`` entry, ``/queue``, ``/system_stats``, ``/api/jobs``,
websocket messages, a rejection's ``node_errors``), and the files the stage reads and writes (a template's
bindings, a batch's and a segment's record).

They are ``TypedDict``s: the JSON is used as it arrives and is written as it is, and mypy holds every
reader to the keys declared here. ``JsonValue`` is left only where ComfyUI or a user puts any JSON at all
(a node input's value, a widget's value, a queue item's graph).
"""

from __future__ import annotations

from typing import NotRequired, TypeAlias, TypedDict

#: Any JSON document.
JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
#: What a template's binding gives a node input: a job parameter's value (None: the template's own).
ParameterValue: TypeAlias = "str | int | float | bool | None"


# --- a prompt (``POST /prompt``) and a template's bindings ---------------------------------------------


class NodeTitle(TypedDict):
    """``_meta`` of a node of an API graph: its title in the editor."""

    title: str


class PromptNode(TypedDict):
    """One node of an API-format graph: its class and inputs (a value, or a link ``[node id, slot]``)."""

    class_type: str
    inputs: dict[str, JsonValue]
    _meta: NotRequired[NodeTitle]


#: An API-format graph ("Save (API)"): node ids to nodes; what ``POST /prompt`` takes as ``prompt``.
ApiGraph: TypeAlias = dict[str, PromptNode]


def link_of(value: JsonValue) -> tuple[str, int] | None:
    """The link an input's value in an API graph is, ``[node id, output slot]``, as (id, slot); None for
    a value."""
    if isinstance(value, list) and len(value) == 2:
        node, slot = value
        if isinstance(node, str) and isinstance(slot, int):
            return node, slot
    return None


class BindingTarget(TypedDict):
    """A node input a parameter is written into."""

    node: str
    input: str


#: A template's bindings: each parameter to the node inputs it sets.
Bindings: TypeAlias = dict[str, list[BindingTarget]]


class SegmentsBlock(TypedDict):
    """``segments`` of a bindings file: the contract of a template that makes one segment a prompt
    (``va.segments.SegmentContract``)."""

    fps: int
    max_frames: int
    frame_form: NotRequired[str]
    frame_multiple: NotRequired[int]
    sample_rate: NotRequired[int]
    context_frames: NotRequired[int]
    head_frames: NotRequired[int]


class ResourcesBlock(TypedDict, total=False):
    """``resources`` of a bindings file: what a cluster job that starts its own ComfyUI asks for."""

    cpus: int
    mem_mb: int
    gpus: int
    runtime: int


class BindingsFile(TypedDict):
    """A template's bindings file (``W.bindings.json``, ``va/schemas/bindings.schema.json``)."""

    schema_version: int
    description: NotRequired[str]
    bindings: Bindings
    segments: NotRequired[SegmentsBlock]
    lipsync_in_model: NotRequired[bool]
    resources: NotRequired[ResourcesBlock]


# --- what the server answers ---------------------------------------------------------------------------


class OutputFile(TypedDict):
    """A file an output node wrote, as ``/history`` names it and ``/view`` takes it."""

    filename: str
    subfolder: NotRequired[str]
    type: NotRequired[str]


class NodeOutput(TypedDict, total=False):
    """What one output node reports: images (also the core video savers', with ``animated``),
    VideoHelperSuite's videos (``gifs``), audio."""

    images: list[OutputFile]
    gifs: list[OutputFile]
    audio: list[OutputFile]
    animated: list[bool]


class EventData(TypedDict, total=False):
    """``data`` of a websocket message, and of a message a history entry's status keeps."""

    prompt_id: str
    timestamp: int
    node: str | None
    display_node: str
    node_id: str
    node_type: str
    executed: list[str]
    exception_message: str
    exception_type: str
    traceback: list[str]
    value: int
    max: int
    output: NodeOutput
    sid: str


class WsFrame(TypedDict, total=False):
    """A text frame of the websocket."""

    type: str
    data: EventData


class HistoryStatus(TypedDict, total=False):
    """``status`` of a history entry; each message a two-item list ``[type, data]``."""

    status_str: str
    completed: bool
    messages: list[tuple[str, EventData]]


class HistoryEntry(TypedDict, total=False):
    """A finished prompt in ``/history/{id}``."""

    prompt: list[JsonValue]
    outputs: dict[str, NodeOutput]
    status: HistoryStatus
    meta: dict[str, dict[str, str | None]]


#: A queued prompt of ``/queue``: ``[number, prompt id, graph, extra data (client_id), output node ids]``.
QueueItem: TypeAlias = list[JsonValue]


class Queue(TypedDict, total=False):
    """``GET /queue``."""

    queue_running: list[QueueItem]
    queue_pending: list[QueueItem]


class Job(TypedDict, total=False):
    """``GET /api/jobs/{id}`` of a newer server; an ended job carries its history entry's outputs and
    status."""

    id: str
    status: str
    priority: int
    create_time: int
    outputs: dict[str, NodeOutput]
    outputs_count: int
    execution_status: HistoryStatus
    execution_error: EventData


class SystemInfo(TypedDict, total=False):
    """``system`` of ``/system_stats``."""

    os: str
    python_version: str
    comfyui_version: str
    embedded_python: bool
    ram_total: int
    ram_free: int


class SystemStats(TypedDict, total=False):
    """``GET /system_stats`` (its ``devices`` are not read)."""

    system: SystemInfo


class Upload(TypedDict):
    """The answer of ``POST /upload/image``: the name to bind, in the server's input folder."""

    name: str
    subfolder: NotRequired[str]
    type: NotRequired[str]


class ErrorInfo(TypedDict, total=False):
    """``extra_info`` of a rejection or of one node's error."""

    node_id: str
    class_type: str
    node_title: str
    input_name: str
    received_value: JsonValue


class PromptError(TypedDict, total=False):
    """The ``error`` of a rejected prompt, or one of a node's ``errors``."""

    type: str
    message: str
    details: str
    extra_info: ErrorInfo


class NodeErrors(TypedDict, total=False):
    """What validation found wrong with one node."""

    errors: list[PromptError]
    dependent_outputs: list[str]
    class_type: str


class Rejection(TypedDict, total=False):
    """The body of ``POST /prompt``'s HTTP 400 (``error`` is a bare text on some servers)."""

    error: PromptError | str
    node_errors: dict[str, NodeErrors]


# --- the stage's records -------------------------------------------------------------------------------


class Collected(TypedDict):
    """A prompt's downloaded outputs: a clip (``video``, with its frames and rate) or ``frames``."""

    kind: str
    files: list[str]
    clip_frames: NotRequired[int]
    clip_fps: NotRequired[float]


class Submission(TypedDict):
    """How a unit's prompt was made: its seed, the attempts it took, the prompt, the server (and its
    version), the template and the graph file kept in the workdir."""

    seed: int
    attempts: int
    prompt_id: str
    server: str
    comfyui_version: str | None
    workflow: str
    graph: str


class BatchRecord(Collected, Submission):
    """``comfyui/batches/NNNN.json``: how a batch was made and its files."""

    batch: str
    fingerprint: str


class SegmentRecord(Submission):
    """A segment's record: how its clip was made, the clip's figures, and (once written) its
    fingerprint and the seconds va itself took."""

    segment: str
    index: int
    take: int
    clip: str
    frames: int
    clip_fps: float
    audio_seconds: float | None
    fingerprint: NotRequired[str]
    own_seconds: NotRequired[float]


class Attempt(TypedDict):
    """The fields of an attempt's events: which unit (``batch`` or ``segment``), the attempt, its seed and
    server."""

    kind: str
    attempt: int
    seed: int
    server: str
    batch: NotRequired[str]
    segment: NotRequired[str]
