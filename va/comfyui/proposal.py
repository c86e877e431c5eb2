"""Proposed bindings for an imported API graph: which node inputs take the job's parameters, found from the
usual nodes (LoadImage, LoadAudio, the text encoders that reach a sampler's positive and negative inputs,
seeds, latent sizes, savers), and what could not be decided, with node ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from va.comfyui.catalog import Catalog
from va.comfyui.protocol import ApiGraph, Bindings, BindingsFile, JsonValue, SegmentsBlock

Target = tuple[str, str]

#: Node classes that hold one value for others (``inputs.value``): a binding goes to them, not to the
#: input they feed, so that every input they feed gets the value.
PRIMITIVES = frozenset(
    {"PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean"}
)
#: Text inputs of encoders that turn a prompt into conditioning.
TEXT_INPUTS = ("text", "prompt")
#: Nodes whose conditioning carries no text of what feeds them: the search for a prompt stops there.
TEXT_DISCARDING = frozenset({"ConditioningZeroOut"})
SEED_INPUTS = ("seed", "noise_seed")


#: Audio-driven video nodes whose segment contract is known: the rate they make frames at, and the
#: frame form of their ``length`` input (docs/COMFYUI_INTERFACE.md, Segments).
@dataclass(frozen=True, slots=True)
class AudioModel:
    """What a known audio-driven node makes: its frame rate, frame form and audio rate, and which of its
    inputs (if any) takes the previous segment's frames."""

    fps: int
    frame_form: str
    sample_rate: int
    context: str | None = None


AUDIO_MODELS = {
    "WanInfiniteTalkToVideo": AudioModel(25, "4n+1", 16000, context="motion_frame_count"),
    "WanSoundImageToVideo": AudioModel(16, "4n+1", 16000),
    "WanHuMoImageToVideo": AudioModel(25, "4n+1", 16000),
}


#: Nodes that extend an audio-driven clip inside the same graph: such a graph makes several windows a
#: prompt, so no one-segment contract fits it.
EXTENDING = frozenset({"WanSoundImageToVideoExtend"})


@dataclass
class Proposal:
    """The bindings proposed, the segment contract when the model is known, and what stays undecided."""

    bindings: Bindings = field(default_factory=dict)
    segments: SegmentsBlock | None = None
    undecided: list[str] = field(default_factory=list)

    def bind(self, parameter: str, targets: Iterable[Target]) -> None:
        """Bind ``parameter`` to every target (node id, input), each once, in node-id order."""
        unique = sorted(set(targets), key=lambda target: (_id_key(target[0]), target[1]))
        if unique:
            self.bindings[parameter] = [{"node": node, "input": name} for node, name in unique]

    def document(self, description: str) -> BindingsFile:
        """The bindings file (``W.bindings.json``) this proposal makes."""
        document: BindingsFile = {
            "schema_version": 1,
            "description": description,
            "bindings": self.bindings,
        }
        if self.segments is not None:
            document["segments"] = self.segments
        return document


def _id_key(node_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in node_id.split(":"))


def _links_to(value: JsonValue) -> str | None:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return value[0]
    return None


def _holder(graph: ApiGraph, node_id: str, name: str) -> Target | None:
    """Where the value of ``node_id``'s input ``name`` is held: the input itself, or the primitive node
    that feeds it; None when another node computes it."""
    value = graph[node_id]["inputs"].get(name)
    origin = _links_to(value)
    if origin is None:
        return (node_id, name)
    feeder = graph.get(origin)
    if (
        feeder is not None
        and feeder["class_type"] in PRIMITIVES
        and _links_to(feeder["inputs"].get("value")) is None
    ):
        return (origin, "value")
    return None


def _of_class(graph: ApiGraph, *classes: str) -> list[str]:
    return sorted((node_id for node_id, node in graph.items() if node["class_type"] in classes), key=_id_key)


def _describe(graph: ApiGraph, node_ids: Iterable[str]) -> str:
    return ", ".join(f"{node_id} ({graph[node_id]['class_type']})" for node_id in node_ids)


def propose_bindings(graph: ApiGraph, catalog: Catalog) -> Proposal:
    """The bindings va proposes for ``graph``, and the choices it leaves to the user."""
    proposal = Proposal()
    _one_of(proposal, graph, "start_image", "image", _of_class(graph, "LoadImage"))
    _prompts(proposal, graph, catalog)
    _seeds(proposal, graph, catalog)
    _sizes(proposal, graph, catalog)
    _savers(proposal, graph, catalog)
    _fps(proposal, graph)
    _audio(proposal, graph)
    videos = _of_class(graph, "LoadVideo")
    if videos:
        proposal.undecided.append(
            f"previous_frames: LoadVideo {_describe(graph, videos)} - bind its 'file' by hand if it takes "
            "the previous segment's frames (with a segments contract)"
        )
    return proposal


def _one_of(proposal: Proposal, graph: ApiGraph, parameter: str, name: str, nodes: list[str]) -> None:
    if len(nodes) == 1:
        target = _holder(graph, nodes[0], name)
        if target is not None:
            proposal.bind(parameter, [target])
            return
    if nodes:
        proposal.undecided.append(f"{parameter}: {len(nodes)} candidates, {_describe(graph, nodes)}")


def _upstream(graph: ApiGraph, catalog: Catalog, start: str, name: str) -> set[str]:
    """Every node a node's input reaches, following links against their direction. A node that passes
    conditioning through (an output named ``positive`` fed by an input of that name) is followed only
    along that side."""
    seen: set[tuple[str, int]] = set()
    todo = [graph[start]["inputs"].get(name)]
    while todo:
        value = todo.pop()
        origin = _links_to(value)
        if origin is None or origin not in graph or not isinstance(value, list):
            continue
        slot = value[1]
        if not isinstance(slot, int) or (origin, slot) in seen:
            continue
        seen.add((origin, slot))
        if graph[origin]["class_type"] in TEXT_DISCARDING:
            continue
        inputs = graph[origin]["inputs"]
        definition = catalog.get(graph[origin]["class_type"])
        names = definition.output_names if definition else ()
        side = names[slot] if slot < len(names) else None
        todo.extend(
            [inputs[side]] if side in ("positive", "negative") and side in inputs else inputs.values()
        )
    return {node_id for node_id, _ in seen}


def _encoders(graph: ApiGraph, catalog: Catalog, nodes: set[str]) -> set[Target]:
    found: set[Target] = set()
    for node_id in nodes:
        definition = catalog.get(graph[node_id]["class_type"])
        if definition is None or "CONDITIONING" not in definition.output_types:
            continue
        for name in TEXT_INPUTS:
            spec = definition.input(name)
            if spec is not None and spec.type == "STRING" and name in graph[node_id]["inputs"]:
                target = _holder(graph, node_id, name)
                if target is not None:
                    found.add(target)
    return found


def _prompts(proposal: Proposal, graph: ApiGraph, catalog: Catalog) -> None:
    positive: set[Target] = set()
    negative: set[Target] = set()
    for node_id, node in graph.items():
        if "positive" in node["inputs"]:
            positive |= _encoders(graph, catalog, _upstream(graph, catalog, node_id, "positive"))
        if "negative" in node["inputs"]:
            negative |= _encoders(graph, catalog, _upstream(graph, catalog, node_id, "negative"))
    both = positive & negative
    if both:
        proposal.undecided.append(
            "prompt/negative: text reaching both sides, "
            + _describe(graph, sorted({t[0] for t in both}, key=_id_key))
        )
    proposal.bind("prompt", positive - both)
    proposal.bind("negative", negative - both)
    if not positive - both:
        proposal.undecided.append("prompt: no text encoder reaches a sampler's positive input")


def _seeds(proposal: Proposal, graph: ApiGraph, catalog: Catalog) -> None:
    targets: list[Target] = []
    for node_id, node in graph.items():
        definition = catalog.get(node["class_type"])
        if definition is None or "sampling" not in definition.category.split("/"):
            continue
        for name in SEED_INPUTS:
            spec = definition.input(name)
            if spec is not None and spec.type == "INT" and name in node["inputs"]:
                target = _holder(graph, node_id, name)
                if target is None:
                    proposal.undecided.append(
                        f"seed: node {node_id} ({node['class_type']}) takes it from another node"
                    )
                else:
                    targets.append(target)
    proposal.bind("seed", targets)


def _sizes(proposal: Proposal, graph: ApiGraph, catalog: Catalog) -> None:
    found: dict[str, list[Target]] = {"width": [], "height": [], "frames": []}
    for node_id in sorted(graph, key=_id_key):
        node = graph[node_id]
        definition = catalog.get(node["class_type"])
        if definition is None or "LATENT" not in definition.output_types:
            continue
        names = {spec.name for spec in definition.inputs if spec.type == "INT"}
        count = "length" if "length" in names else "batch_size" if "batch_size" in names else None
        if not {"width", "height"} <= names or count is None:
            continue
        for parameter, name in (("width", "width"), ("height", "height"), ("frames", count)):
            target = _holder(graph, node_id, name)
            if target is None:
                proposal.undecided.append(
                    f"{parameter}: node {node_id} ({node['class_type']}) takes {name} from another node"
                )
            else:
                found[parameter].append(target)
    for parameter, targets in found.items():
        proposal.bind(parameter, targets)


def _savers(proposal: Proposal, graph: ApiGraph, catalog: Catalog) -> None:
    targets = []
    for node_id, node in graph.items():
        definition = catalog.get(node["class_type"])
        if definition is not None and definition.is_output and "filename_prefix" in node["inputs"]:
            target = _holder(graph, node_id, "filename_prefix")
            if target is not None:
                targets.append(target)
    proposal.bind("filename_prefix", targets)
    if not targets:
        proposal.undecided.append("filename_prefix: no node saving files (SaveImage, SaveVideo)")


def _fps(proposal: Proposal, graph: ApiGraph) -> None:
    targets = [_holder(graph, node_id, "fps") for node_id in _of_class(graph, "CreateVideo")]
    proposal.bind("fps", [target for target in targets if target is not None])


def _audio(proposal: Proposal, graph: ApiGraph) -> None:
    loaders = _of_class(graph, "LoadAudio")
    models = _of_class(graph, *AUDIO_MODELS)
    if not loaders:
        return
    extends = _of_class(graph, *EXTENDING)
    if extends:
        proposal.undecided.append(
            f"audio: the graph chains windows in itself ({_describe(graph, extends)}): cut it to one segment "
            "(as the shipped wan22_s2v_segment is) before binding audio with a segments contract"
        )
        return
    if len(loaders) != 1 or len(models) != 1:
        proposal.undecided.append(
            f"audio: LoadAudio {_describe(graph, loaders)} and audio-driven nodes "
            f"{_describe(graph, models) or 'none known'}: bind audio by hand, with a segments contract"
        )
        return
    model = graph[models[0]]
    known = AUDIO_MODELS[model["class_type"]]
    holder = _holder(graph, models[0], "length")
    length = None if holder is None else graph[holder[0]]["inputs"].get(holder[1])
    if not isinstance(length, int):
        proposal.undecided.append(
            f"audio: node {models[0]} ({model['class_type']}) takes its length from another node"
        )
        return
    context = model["inputs"].get(known.context or "", 0)
    context = context if isinstance(context, int) else 0
    proposal.bind("audio", [(loaders[0], "audio")])
    proposal.segments = {
        "fps": known.fps,
        "max_frames": length,
        "frame_form": known.frame_form,
        "sample_rate": known.sample_rate,
        "context_frames": context,
        "head_frames": context,
    }
