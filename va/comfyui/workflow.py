"""Workflow templates: an API-format graph and its bindings of job parameters to node inputs.

A workflow id ``W`` is the graph ``W.json`` and the bindings ``W.bindings.json``, looked for in
``$VA_STATE_DIR/state/comfyui/workflows/`` and then in the repository's ``assets/workflows/``. The
default workflow, ``vidax_text2img_frames``, is also built in, so a running ComfyUI is usable even when
no asset was installed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from va import schema
from va.comfyui.pool import JobRequest, request_of
from va.comfyui.protocol import ApiGraph, Bindings, BindingsFile, ParameterValue
from va.errors import ExitCode, VaError
from va.segments import SegmentContract, longest_new
from va.state import state_dir

DEFAULT_WORKFLOW = "vidax_text2img_frames"
REPO_WORKFLOWS = Path(__file__).resolve().parent.parent.parent / "assets" / "workflows"

#: The parameters a template can bind, and what each is.
PARAMETERS = {
    "prompt": "positive prompt text",
    "negative": "negative prompt text",
    "width": "frame width in pixels",
    "height": "frame height in pixels",
    "frames": "frames of this batch (e.g. EmptyLatentImage.batch_size)",
    "fps": "generation frame rate",
    "seed": "the batch's seed",
    "steps": "sampler steps",
    "cfg": "classifier-free guidance",
    "sampler": "sampler name",
    "scheduler": "scheduler name",
    "ckpt_name": "checkpoint file name",
    "denoise": "denoise strength",
    "motion_strength": "motion.strength, 0..1 (e.g. to denoise or augmentation_level)",
    "start_image": "name of the uploaded start image (LoadImage.image)",
    "filename_prefix": "prefix of the saved files",
    "audio": "a segment's voice, head frames included, uploaded (LoadAudio.audio)",
    "previous_frames": "the previous segment's last context frames as an uploaded video (LoadVideo.file)",
    "last_frame": "the previous segment's last frame, uploaded (LoadImage.image)",
    "segment_index": "the segment's index, from 0",
}

#: Parameters only a template that generates segments (``segments`` in its bindings) can bind.
SEGMENT_PARAMETERS = ("audio", "previous_frames", "last_frame", "segment_index")

INLINE_GRAPH: ApiGraph = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 576, "batch_size": 16}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0,
            "steps": 20,
            "cfg": 7.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "vidax_frames", "images": ["8", 0]}},
}

INLINE_BINDINGS: Bindings = {
    "ckpt_name": [{"node": "4", "input": "ckpt_name"}],
    "prompt": [{"node": "6", "input": "text"}],
    "negative": [{"node": "7", "input": "text"}],
    "width": [{"node": "5", "input": "width"}],
    "height": [{"node": "5", "input": "height"}],
    "frames": [{"node": "5", "input": "batch_size"}],
    "seed": [{"node": "3", "input": "seed"}],
    "steps": [{"node": "3", "input": "steps"}],
    "cfg": [{"node": "3", "input": "cfg"}],
    "sampler": [{"node": "3", "input": "sampler_name"}],
    "scheduler": [{"node": "3", "input": "scheduler"}],
    "denoise": [{"node": "3", "input": "denoise"}],
    "filename_prefix": [{"node": "9", "input": "filename_prefix"}],
}


@dataclass(frozen=True)
class Workflow:
    """A template: its id, graph, bindings and where it came from."""

    id: str
    graph: ApiGraph
    bindings: Bindings
    source: str
    #: The model's contract when the template makes one segment of a longer video a prompt.
    segments: SegmentContract | None = None
    #: Whether the model moves the lips to the audio itself (no lip-sync stage unless the job names one).
    lipsync_in_model: bool = False
    #: What a cluster job that starts its own ComfyUI for this template asks for (bindings' ``resources``).
    resources: JobRequest | None = None

    @property
    def binds_start_image(self) -> bool:
        """Whether the start image must be uploaded for this template."""
        return "start_image" in self.bindings

    @property
    def chained(self) -> bool:
        """Whether a segment needs the one before it (the template binds ``previous_frames`` or
        ``last_frame``); otherwise segments are independent."""
        return "previous_frames" in self.bindings or "last_frame" in self.bindings


def workflow_dirs() -> list[Path]:
    """Where templates are looked for, in order."""
    return [state_dir() / "comfyui" / "workflows", REPO_WORKFLOWS]


def check_bindings(workflow_id: str, graph: object, bindings: Bindings) -> None:
    """Every binding must name a node of the graph and an input that node has; errors name both."""
    if not isinstance(graph, dict) or not graph:
        raise VaError(
            ExitCode.VALIDATION_FAILED, f"workflow {workflow_id}: the graph is not an API-format object"
        )
    for param, targets in bindings.items():
        for target in targets:
            node = graph.get(target["node"])
            if not isinstance(node, dict) or "class_type" not in node:
                raise VaError(
                    ExitCode.VALIDATION_FAILED,
                    f"workflow {workflow_id}: binding {param!r} names node {target['node']}, "
                    "which the graph does not have",
                )
            if target["input"] not in node.get("inputs", {}):
                raise VaError(
                    ExitCode.VALIDATION_FAILED,
                    f"workflow {workflow_id}: binding {param!r}: node {target['node']} "
                    f"({node['class_type']}) has no input {target['input']!r}",
                )


def check_segment_bindings(workflow_id: str, bindings: Bindings, contract: SegmentContract | None) -> None:
    """The segment parameters (``audio``, ``previous_frames``, ...) are bound only by a template that
    declares ``segments``, and one that does makes at least one new frame a segment."""
    if contract is None:
        bound = [param for param in SEGMENT_PARAMETERS if param in bindings]
        if bound:
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f'workflow {workflow_id}: binding {bound[0]!r} needs a "segments" contract in its bindings '
                "file (docs/COMFYUI_INTERFACE.md, Segments)",
            )
        return
    longest_new(contract, workflow_id)
    if "previous_frames" in bindings and contract.context_frames < 1:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"workflow {workflow_id}: binding 'previous_frames' needs segments.context_frames of at least 1",
        )


#: Output nodes whose files this version cannot read back, and why (checked when a template is loaded).
UNREADABLE_OUTPUTS = {
    "SaveAnimatedWEBP": "animated WebP, which ffmpeg cannot decode; save with SaveVideo (mp4) or SaveImage",
}


def check_outputs(workflow_id: str, graph: object) -> None:
    """Refuse a template whose output node writes files the stage could not read, naming the node."""
    nodes = graph.items() if isinstance(graph, dict) else []
    for node_id, node in nodes:
        kind = node.get("class_type") if isinstance(node, dict) else None
        if kind in UNREADABLE_OUTPUTS:
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"workflow {workflow_id}: node {node_id} ({kind}) writes {UNREADABLE_OUTPUTS[kind]}",
            )


def load_workflow(workflow_id: str) -> Workflow:
    """The template of ``workflow_id``, its bindings checked against its graph."""
    for folder in workflow_dirs():
        graph_path = folder / f"{workflow_id}.json"
        if not graph_path.is_file():
            continue
        bindings_path = folder / f"{workflow_id}.bindings.json"
        if bindings_path.is_file():
            # Checked against va/schemas/bindings.schema.json, defaults filled in: a BindingsFile.
            document = cast(
                BindingsFile,
                schema.validate(
                    schema.load_json_file(bindings_path, "bindings"), "bindings", str(bindings_path)
                ),
            )
            bindings = document["bindings"]
            contract = SegmentContract(**document["segments"]) if "segments" in document else None
            in_model = bool(document["lipsync_in_model"])
            resources = request_of(document.get("resources"))
        elif workflow_id == DEFAULT_WORKFLOW:
            bindings, contract, in_model, resources = INLINE_BINDINGS, None, False, None
        else:
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"workflow {workflow_id}: no bindings file {bindings_path.name} beside {graph_path}",
            )
        graph = schema.load_json_file(graph_path, "workflow")
        check_bindings(workflow_id, graph, bindings)
        check_outputs(workflow_id, graph)
        check_segment_bindings(workflow_id, bindings, contract)
        return Workflow(workflow_id, graph, bindings, str(graph_path), contract, in_model, resources)
    if workflow_id == DEFAULT_WORKFLOW:
        return Workflow(workflow_id, copy.deepcopy(INLINE_GRAPH), INLINE_BINDINGS, "built in")
    places = ", ".join(str(folder) for folder in workflow_dirs())
    raise VaError(
        ExitCode.VALIDATION_FAILED, f"comfyui.workflow_ids: workflow {workflow_id!r} not found in {places}"
    )


def render(workflow: Workflow, values: dict[str, ParameterValue]) -> ApiGraph:
    """The graph with every bound input set to its parameter's value (parameters without a value keep
    the template's)."""
    graph = copy.deepcopy(workflow.graph)
    for param, targets in workflow.bindings.items():
        if values.get(param) is None:
            continue
        for target in targets:
            graph[target["node"]]["inputs"][target["input"]] = values[param]
    return graph


def graph_json(graph: ApiGraph) -> str:
    """A rendered graph as it is stored in the workdir."""
    return json.dumps(graph, indent=2, sort_keys=True) + "\n"
