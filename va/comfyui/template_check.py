"""``va workflow check``: a template and its bindings against a server's node definitions - node classes,
input names, link and value types, min/max/step, a segment contract's frame counts - and, with a server,
the model files the graph names that the server does not have."""

from __future__ import annotations

from dataclasses import dataclass

from va.comfyui.catalog import UPLOAD_OPTIONS, Catalog, InputSpec, NodeClass
from va.comfyui.protocol import ApiGraph, BindingTarget, JsonValue, PromptNode, link_of
from va.comfyui.workflow import Workflow
from va.segments import SegmentContract

#: The input types each parameter's value has (``render`` writes the value itself into the input).
PARAMETER_TYPES: dict[str, frozenset[str]] = {
    "prompt": frozenset({"STRING"}),
    "negative": frozenset({"STRING"}),
    "width": frozenset({"INT"}),
    "height": frozenset({"INT"}),
    "frames": frozenset({"INT"}),
    "fps": frozenset({"INT", "FLOAT"}),
    "seed": frozenset({"INT"}),
    "steps": frozenset({"INT"}),
    "cfg": frozenset({"FLOAT"}),
    "sampler": frozenset({"COMBO"}),
    "scheduler": frozenset({"COMBO"}),
    "ckpt_name": frozenset({"COMBO"}),
    "denoise": frozenset({"FLOAT"}),
    "motion_strength": frozenset({"FLOAT"}),
    "start_image": frozenset({"COMBO"}),
    "last_frame": frozenset({"COMBO"}),
    "audio": frozenset({"COMBO"}),
    "previous_frames": frozenset({"COMBO"}),
    "segment_index": frozenset({"INT", "FLOAT"}),
    "filename_prefix": frozenset({"STRING"}),
}
#: Parameters whose value is a file va uploads: the server's list of input files cannot hold it yet.
UPLOADED = frozenset({"start_image", "last_frame", "audio", "previous_frames"})
#: File endings of model weights: a combo value with one of these names a model file.
MODEL_ENDINGS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
#: The ``models/`` folder a core loader's file input lists (ComfyUI's folder_paths names), by input.
MODEL_FOLDERS = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
    ("ModelPatchLoader", "name"): "model_patches",
    ("LatentUpscaleModelLoader", "model_name"): "latent_upscale_models",
}


def model_folder(where: str, name: str) -> str:
    """``<folder>/`` of a loader's file input, from ``where`` ("node 13 (UNETLoader)"); empty if unknown."""
    kind = where.rsplit("(", 1)[-1].rstrip(")")
    folder = MODEL_FOLDERS.get((kind, name))
    return f"{folder}/" if folder else ""


#: The type a primitive node passes on, by class: a binding to its ``value`` fills an input of that type.
PRIMITIVE_TYPES = {
    "PrimitiveInt": "INT",
    "PrimitiveFloat": "FLOAT",
    "PrimitiveString": "STRING",
    "PrimitiveStringMultiline": "STRING",
    "PrimitiveBoolean": "BOOLEAN",
}


@dataclass(frozen=True)
class CheckResult:
    """What the check found: problems (the template would be refused or fail) and model files missing."""

    problems: list[str]
    missing_models: list[str]
    nodes: int
    bindings: int

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong (missing model files are reported, not counted as wrong)."""
        return not self.problems


def check_template(workflow: Workflow, catalog: Catalog) -> CheckResult:
    """Every node, input, link and bound value of ``workflow`` against ``catalog``."""
    problems: list[str] = []
    missing: list[str] = []
    bound = {(t["node"], t["input"]) for targets in workflow.bindings.values() for t in targets}
    used = feeding_outputs(workflow.graph, catalog)
    if not used:
        problems.append("no output node (SaveImage, SaveVideo, ...): the server would run nothing")
    for node_id, node in workflow.graph.items():
        definition = catalog.get(str(node.get("class_type")))
        if definition is None:
            problems.append(
                f"node {node_id}: class {node.get('class_type')!r} not on the server ({catalog.source})"
            )
            continue
        if node_id not in used:
            continue  # the server validates and runs only what leads to an output node
        problems.extend(
            _check_node(
                workflow.graph,
                node_id=node_id,
                node=node,
                definition=definition,
                catalog=catalog,
                bound=bound,
                missing=missing,
            )
        )
    count = 0
    for parameter, targets in workflow.bindings.items():
        for target in targets:
            count += 1
            problems.extend(_check_binding(workflow.graph, catalog, parameter, target, workflow.segments))
    return CheckResult(problems, missing, len(workflow.graph), count)


def feeding_outputs(graph: ApiGraph, catalog: Catalog) -> set[str]:
    """The output nodes of ``graph`` and every node that leads to one."""
    todo = [
        node_id
        for node_id, node in graph.items()
        if (definition := catalog.get(str(node.get("class_type")))) is not None and definition.is_output
    ]
    seen: set[str] = set()
    while todo:
        node_id = todo.pop()
        if node_id in seen or node_id not in graph:
            continue
        seen.add(node_id)
        links = (link_of(value) for value in (graph[node_id].get("inputs") or {}).values())
        todo.extend(link[0] for link in links if link is not None)
    return seen


def _check_node(
    graph: ApiGraph,
    *,
    node_id: str,
    node: PromptNode,
    definition: NodeClass,
    catalog: Catalog,
    bound: set[tuple[str, str]],
    missing: list[str],
) -> list[str]:
    where = f"node {node_id} ({definition.name})"
    problems: list[str] = []
    inputs = node.get("inputs") or {}
    for declared in definition.inputs:
        if declared.required and declared.name not in inputs and not declared.type.startswith("COMFY_"):
            problems.append(f"{where}: required input {declared.name!r} missing")
    for name, value in inputs.items():
        spec, link = definition.input(name), link_of(value)
        if spec is None:
            if link is not None:
                problems.append(f"{where}: a link into {name!r}, an input the class does not have")
            continue
        if link is not None:
            problems.extend(_check_link(graph, catalog, where, spec, link))
        elif (node_id, name) not in bound:
            problems.extend(_check_value(where, spec, value, missing))
    return problems


def _check_link(
    graph: ApiGraph, catalog: Catalog, where: str, spec: InputSpec, link: tuple[str, int]
) -> list[str]:
    node_id, slot = link
    origin = graph.get(node_id)
    if origin is None:
        return [f"{where}: {spec.name!r} linked to node {node_id}, which the graph does not have"]
    source = catalog.get(str(origin.get("class_type")))
    if source is None:
        return []
    if slot >= len(source.output_types):
        return [
            f"{where}: {spec.name!r} linked to output {slot} of node {node_id}, "
            f"which has {len(source.output_types)}"
        ]
    output_type = source.output_types[slot]
    if spec.type.startswith("COMFY_") or spec.accepts(output_type):
        return []
    if (spec.type == "COMBO" and output_type in ("COMBO", "*")) or output_type.startswith("COMFY_"):
        return []
    return [f"{where}: {spec.name!r} takes {spec.type}, linked to a {output_type} of node {node_id}"]


def _check_value(where: str, spec: InputSpec, value: JsonValue, missing: list[str]) -> list[str]:
    name = f"{where}: {spec.name}"
    if spec.type in ("INT", "FLOAT"):
        return _check_number(name, spec, value)
    if any(spec.options.get(key) for key in UPLOAD_OPTIONS):
        return []  # an input file (an image, audio, a video): uploaded before the prompt, not checked here
    if spec.type == "COMBO" and (not spec.choices or value not in spec.choices):
        if isinstance(value, str) and value.lower().endswith(MODEL_ENDINGS):
            missing.append(f"{model_folder(where, spec.name)}{value} ({name})")
            return []
        if spec.choices:
            return [f"{name} {value!r} is not one of the server's choices"]
    if spec.type == "BOOLEAN" and not isinstance(value, bool):
        return [f"{name} {value!r} is not a boolean"]
    if spec.type == "STRING" and not isinstance(value, str):
        return [f"{name} {value!r} is not text"]
    return []


def _check_number(name: str, spec: InputSpec, value: JsonValue) -> list[str]:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (spec.type == "INT" and not isinstance(value, int))
    ):
        return [f"{name} {value!r} is not {'an integer' if spec.type == 'INT' else 'a number'}"]
    low, high, step = spec.options.get("min"), spec.options.get("max"), spec.options.get("step")
    if isinstance(low, int | float) and value < low:
        return [f"{name} {value} is below its min {low}"]
    if isinstance(high, int | float) and value > high:
        return [f"{name} {value} is above its max {high}"]
    if spec.type == "INT" and isinstance(step, int) and step > 1:
        base = low if isinstance(low, int) else 0
        if (value - base) % step:
            return [f"{name} {value} is off its step {step} (from {base})"]
    return []


def _check_binding(
    graph: ApiGraph,
    catalog: Catalog,
    parameter: str,
    target: BindingTarget,
    contract: SegmentContract | None,
) -> list[str]:
    node = graph.get(target["node"])
    where = f"binding {parameter!r}: node {target['node']}"
    if node is None:
        return [f"{where} not in the graph"]
    definition = catalog.get(str(node.get("class_type")))
    if definition is None:
        return []
    spec = definition.input(target["input"])
    if spec is None:
        return [f"{where} ({definition.name}) has no input {target['input']!r}"]
    kind = PRIMITIVE_TYPES.get(definition.name, spec.type)
    wanted = PARAMETER_TYPES.get(parameter)
    # An input of several types (``FLOAT,INT,BOOLEAN``) takes a parameter of any of them.
    if wanted is not None and not wanted & set(kind.split(",")):
        return [
            f"{where} ({definition.name}).{spec.name} takes {kind}, {parameter} is {'/'.join(sorted(wanted))}"
        ]
    value = (node.get("inputs") or {}).get(target["input"])
    if link_of(value) is not None:
        return [f"{where} ({definition.name}).{spec.name} is fed by a link, which the binding would cut"]
    problems = []
    if parameter not in UPLOADED and spec.type in ("INT", "FLOAT"):
        problems.extend(_check_number(f"{where} ({definition.name}).{spec.name}", spec, value))
    if parameter == "frames" and contract is not None:
        problems.extend(_check_frames(f"{where} ({definition.name}).{spec.name}", spec, contract))
    return problems


def _check_frames(name: str, spec: InputSpec, contract: SegmentContract) -> list[str]:
    """The contract's longest segment fits the input, and the input's step gives the contract's frame
    form (a length of min 1, step 4 takes 4n+1 frames)."""
    problems = _check_number(f"{name} at max_frames", spec, contract.max_frames)
    low, step = spec.options.get("min"), spec.options.get("step")
    if isinstance(step, int) and step > 1 and isinstance(low, int):
        form = f"{step}n+{low % step}"
        if contract.frame_form != form:
            problems.append(f"{name} takes {form} frames, the contract says {contract.frame_form}")
    return problems
