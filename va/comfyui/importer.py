"""Editor-format workflows (what ComfyUI's "Save" writes, what the official templates hold) turned into the
API graph a ``POST /prompt`` takes, the way the editor's own "Save (API)" does it.

The node definitions of a server (:mod:`va.comfyui.catalog`) say which widget value is which input.
Links are followed through Reroute nodes, the editor's primitive nodes and subgraphs (flattened, inner
nodes named ``<subgraph node>:<inner node>``); bypassed nodes (mode 4) pass an input of the output's
type through, muted nodes (mode 2) are left out with the links that lead from them, notes are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NotRequired, TypeAlias, TypedDict, cast

from va.comfyui.catalog import CONTROL_VALUES, DYNAMIC_COMBO, Catalog, InputSpec, NodeClass
from va.comfyui.protocol import ApiGraph, JsonValue, link_of
from va.errors import ExitCode, VaError

#: Node types that exist only in the editor: they never reach the server.
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
#: The editor's node modes that change what is sent: muted nodes are left out, bypassed ones pass through.
MUTED = 2
BYPASSED = 4
#: The editor's 3D loaders keep three button values (upload, extra resources, clear) after the file name.
FILE_UPLOAD_BUTTONS = 3
#: The ids the editor gives a subgraph's own input and output nodes.
SUBGRAPH_INPUT = -10
SUBGRAPH_OUTPUT = -20


# --- the editor's format, as a workflow file holds it (read defensively: fields may be missing) --------


class WidgetName(TypedDict, total=False):
    """``widget`` of an input slot: the widget the input replaces."""

    name: str


class EditorSlot(TypedDict, total=False):
    """An input or output slot of an editor node, or an input or output of a subgraph definition."""

    name: str
    type: str
    link: int | None
    links: list[int] | None
    linkIds: list[int]
    widget: WidgetName


class EditorNode(TypedDict, total=False):
    """A node of the editor's graph: ``type`` is its class (or a subgraph's id), ``mode`` 2 muted, 4
    bypassed."""

    id: int | str
    type: str
    mode: int
    title: str
    inputs: list[EditorSlot]
    outputs: list[EditorSlot]
    widgets_values: JsonValue


class LinkObject(TypedDict):
    """A link as subgraph definitions (and newer files) keep it."""

    id: int
    origin_id: int
    origin_slot: int
    target_id: int
    target_slot: int
    type: NotRequired[str]


#: A link: ``[id, origin id, origin slot, target id, target slot, type]``, or the same as an object.
EditorLink: TypeAlias = "list[int | str] | LinkObject"


class SubgraphDefinition(TypedDict, total=False):
    """A subgraph of ``definitions.subgraphs``: its nodes and links, and its own inputs and outputs."""

    id: str
    name: str
    nodes: list[EditorNode]
    links: list[EditorLink]
    inputs: list[EditorSlot]
    outputs: list[EditorSlot]


class Definitions(TypedDict, total=False):
    """``definitions`` of a workflow."""

    subgraphs: list[SubgraphDefinition]


class EditorState(TypedDict, total=False):
    """``state`` of a newer workflow file."""

    lastNodeId: int


class EditorWorkflow(TypedDict, total=False):
    """A workflow in the editor's format (what "Save" writes)."""

    nodes: list[EditorNode]
    links: list[EditorLink]
    definitions: Definitions
    state: EditorState
    last_node_id: int


@dataclass(frozen=True)
class Link:
    """A link of the editor: from an output slot of one node to an input slot of another."""

    id: int
    origin_id: int
    origin_slot: int
    target_id: int
    target_slot: int
    type: str


@dataclass(frozen=True)
class NodeRef:
    """An output of a node of the API graph, as ``POST /prompt`` names it: ``[id, slot]``."""

    node: str
    slot: int


@dataclass(frozen=True)
class Value:
    """A value that reaches an input through a link (from a primitive node of the editor)."""

    value: JsonValue


Source = NodeRef | Value


@dataclass
class Scope:
    """The root graph or one subgraph instance: its nodes and links, and the node that holds it."""

    nodes: dict[int, EditorNode]
    links: dict[int, Link]
    path: tuple[str, ...]
    definition: SubgraphDefinition | None = None
    parent: Scope | None = None
    holder: EditorNode | None = None
    children: dict[int, Scope] = field(default_factory=dict)

    def api_id(self, node_id: int) -> str:
        """The id the node gets in the API graph: the subgraph path and its own id, joined by ``:``."""
        return ":".join((*self.path, str(node_id)))


def refuse(source: str, message: str) -> VaError:
    """The one-line refusal (exit 10) of a workflow that cannot be converted."""
    return VaError(ExitCode.VALIDATION_FAILED, f"{source}: {message}")


def parse_workflow(text: str, source: str) -> EditorWorkflow:
    """The editor-format workflow in ``text``; not JSON, an API graph or anything else is refused."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise refuse(source, f"not JSON ({exc})") from None
    if is_api_graph(document):
        raise refuse(
            source,
            'already an API-format graph ("Save (API)"): use it as a template as it is, with a bindings file',
        )
    if not isinstance(document, dict) or not isinstance(document.get("nodes"), list):
        raise refuse(source, "not a ComfyUI workflow in the editor's format (no list of nodes)")
    return cast(EditorWorkflow, document)  # an object with a list of nodes: read defensively from here


def is_api_graph(document: object) -> bool:
    """Whether ``document`` is in the API format already: node ids mapping to ``class_type``, ``inputs``."""
    return (
        isinstance(document, dict)
        and bool(document)
        and all(isinstance(node, dict) and "class_type" in node for node in document.values())
    )


def _links(raw: list[EditorLink] | None, source: str) -> dict[int, Link]:
    found: dict[int, Link] = {}
    for item in raw or []:
        if isinstance(item, list) and len(item) >= 5:
            link = Link(int(item[0]), int(item[1]), int(item[2]), int(item[3]), int(item[4]), str(item[5]))
        elif isinstance(item, dict):
            link = Link(
                int(item["id"]),
                int(item["origin_id"]),
                int(item["origin_slot"]),
                int(item["target_id"]),
                int(item["target_slot"]),
                str(item.get("type", "*")),
            )
        else:
            raise refuse(source, f"a link is neither a list nor an object: {item!r}")
        found[link.id] = link
    return found


class Converter:
    """One conversion: a workflow, the node definitions, and the API graph being built."""

    def __init__(self, document: EditorWorkflow, catalog: Catalog, source: str) -> None:
        self.catalog = catalog
        self.source = source
        subgraphs = (document.get("definitions") or {}).get("subgraphs") or []
        self.subgraphs: dict[str, SubgraphDefinition] = unique_node_ids(document, subgraphs)
        self.root = Scope(self._nodes(document["nodes"]), _links(document.get("links"), source), ())
        self.graph: ApiGraph = {}

    def _nodes(self, raw: list[EditorNode]) -> dict[int, EditorNode]:
        nodes: dict[int, EditorNode] = {}
        for node in raw:
            if not isinstance(node, dict) or "id" not in node or "type" not in node:
                raise refuse(self.source, f"a node without an id or a type: {str(node)[:80]}")
            nodes[int(node["id"])] = node
        return nodes

    def convert(self) -> ApiGraph:
        """The API graph of the whole workflow, subgraphs flattened."""
        self._walk(self.root, ())
        for node in self.graph.values():
            for name, value in list(node["inputs"].items()):
                if (link := link_of(value)) is not None and link[0] not in self.graph:
                    del node["inputs"][name]
        return self.graph

    def _walk(self, scope: Scope, stack: tuple[str, ...]) -> None:
        for node_id, node in scope.nodes.items():
            kind = str(node["type"])
            if kind in self.subgraphs:
                # The editor leaves out the inner nodes of a muted or bypassed subgraph node of the root
                # graph, but sends those of one inside a subgraph (nothing leads from them to an output:
                # the links pass by, and the server skips them). The same here, node for node.
                if node.get("mode") in (MUTED, BYPASSED) and scope.definition is None:
                    continue
                if kind in stack:
                    name = self.subgraphs[kind].get("name") or kind
                    raise refuse(self.source, f"subgraph {name!r} ({kind}) contains itself")
                self._walk(self._child(scope, node_id), (*stack, kind))
            elif kind in NOTE_TYPES or kind in (REROUTE, PRIMITIVE) or node.get("mode") in (MUTED, BYPASSED):
                continue  # never sent: a bypassed or muted node may be of a class the server lacks
            else:
                definition = self.catalog.get(kind)
                if definition is None and kind.startswith("workflow>"):
                    raise refuse(
                        self.source,
                        f"node {scope.api_id(node_id)} is a group node of the older editor ({kind!r}): "
                        "convert it to a subgraph in ComfyUI, save, and import again",
                    )
                if definition is None:
                    raise refuse(
                        self.source,
                        f"node {scope.api_id(node_id)} is of type {kind!r}, which the server "
                        f"({self.catalog.source}) does not know (a custom node not installed?)",
                    )
                self._emit(scope, node_id, node, definition)

    def _child(self, scope: Scope, node_id: int) -> Scope:
        if node_id not in scope.children:
            holder = scope.nodes[node_id]
            definition = self.subgraphs[str(holder["type"])]
            scope.children[node_id] = Scope(
                self._nodes(definition.get("nodes") or []),
                _links(definition.get("links"), self.source),
                (*scope.path, str(node_id)),
                definition,
                scope,
                holder,
            )
        return scope.children[node_id]

    def _emit(self, scope: Scope, node_id: int, node: EditorNode, definition: NodeClass) -> None:
        inputs = widget_inputs(node.get("widgets_values"), definition)
        for slot in node.get("inputs") or []:
            if (link_id := slot.get("link")) is None:
                continue
            found = self._resolve(scope, int(link_id), 0)
            if isinstance(found, NodeRef):
                inputs[str(slot["name"])] = [found.node, found.slot]
            elif isinstance(found, Value):
                inputs[str(slot["name"])] = _wrapped(found.value)
        title = node.get("title") or definition.display_name
        self.graph[scope.api_id(node_id)] = {
            "inputs": inputs,
            "class_type": definition.name,
            "_meta": {"title": title},
        }

    def _resolve(self, scope: Scope, link_id: int, depth: int, rerouted: bool = False) -> Source | None:
        """Where the value of a link comes from, or None when nothing reaches it (``rerouted``: the link
        was reached through a Reroute)."""
        if depth > 1000:
            raise refuse(self.source, f"link {link_id} goes round in a loop of reroutes or bypassed nodes")
        link = scope.links.get(link_id)
        if link is None:
            raise refuse(
                self.source, f"a node input names link {link_id}, which the {_where(scope)} does not have"
            )
        if link.origin_id == SUBGRAPH_INPUT:
            return self._from_subgraph_input(scope, link, depth, rerouted)
        origin = scope.nodes.get(link.origin_id)
        if origin is None:
            raise refuse(
                self.source,
                f"link {link.id} leads from node {scope.api_id(link.origin_id)}, which the {_where(scope)} "
                "does not have",
            )
        kind = str(origin["type"])
        if origin.get("mode") == MUTED:
            return None
        if origin.get("mode") == BYPASSED:
            return self._through_bypassed(scope, origin, link, depth)
        if kind == REROUTE:
            upstream = (origin.get("inputs") or [{}])[0].get("link")
            return None if upstream is None else self._resolve(scope, int(upstream), depth + 1, True)
        if kind == PRIMITIVE:
            # The editor's primitive node writes its value into the widgets it feeds directly; through a
            # Reroute nothing arrives, and the input keeps its own widget value.
            values = origin.get("widgets_values")
            return Value(values[0]) if isinstance(values, list) and values and not rerouted else None
        if kind in self.subgraphs:
            child = self._child(scope, link.origin_id)
            outputs = (child.definition or {}).get("outputs") or []
            if link.origin_slot >= len(outputs) or not outputs[link.origin_slot].get("linkIds"):
                return None
            return self._resolve(child, int(outputs[link.origin_slot]["linkIds"][0]), depth + 1)
        return NodeRef(scope.api_id(link.origin_id), link.origin_slot)

    def _from_subgraph_input(self, scope: Scope, link: Link, depth: int, rerouted: bool) -> Source | None:
        """A subgraph input: what reaches the subgraph node outside, else the value of the widget the
        editor shows for it on the subgraph node (the first inner widget the input feeds)."""
        if scope.parent is None or scope.holder is None or scope.definition is None:
            raise refuse(self.source, f"link {link.id} leads from a subgraph input outside any subgraph")
        entries = scope.definition.get("inputs") or []
        if link.origin_slot >= len(entries):
            return None
        entry = entries[link.origin_slot]
        for slot in scope.holder.get("inputs") or []:
            if slot.get("name") == entry.get("name") and (link_id := slot.get("link")) is not None:
                return self._resolve(scope.parent, int(link_id), depth + 1, rerouted)
        return self._promoted_value(scope, entry)

    def _promoted_value(self, scope: Scope, entry: EditorSlot) -> Source | None:
        for link_id in entry.get("linkIds") or []:
            inner = scope.links.get(int(link_id))
            target = None if inner is None else scope.nodes.get(inner.target_id)
            if inner is None or target is None:
                continue
            slots = target.get("inputs") or []
            slot = slots[inner.target_slot] if inner.target_slot < len(slots) else {}
            definition = self.catalog.get(str(target["type"]))
            if not slot.get("widget") or definition is None:
                continue
            values = widget_inputs(target.get("widgets_values"), definition)
            name = str(slot["widget"].get("name") or slot.get("name"))
            if name in values:
                return Value(values[name])
        return None

    def _through_bypassed(self, scope: Scope, origin: EditorNode, link: Link, depth: int) -> Source | None:
        """A bypassed node hands on the input of its output's type: the same slot first, else the first."""
        inputs = origin.get("inputs") or []
        outputs = origin.get("outputs") or []
        wanted = str(outputs[link.origin_slot].get("type")) if link.origin_slot < len(outputs) else link.type
        index = _bypass_input(inputs, link.origin_slot, wanted)
        link_id = None if index is None else inputs[index].get("link")
        if link_id is None:
            return None
        return self._resolve(scope, int(link_id), depth + 1)


def unique_node_ids(
    document: EditorWorkflow, subgraphs: list[SubgraphDefinition]
) -> dict[str, SubgraphDefinition]:
    """The subgraph definitions by id, an inner node whose id is already taken (by the root graph or an
    earlier definition) renumbered as the editor does when it loads a file: the next free id after the
    highest seen so far, counting from the root's ``last_node_id``. The API graph names inner nodes by
    these ids."""
    used = {
        int(node["id"]) for node in document.get("nodes") or [] if isinstance(node, dict) and "id" in node
    }
    state = document.get("state")
    last = int((state or {}).get("lastNodeId") or 0) if isinstance(state, dict) else 0
    last = last or int(document.get("last_node_id") or 0)
    found: dict[str, SubgraphDefinition] = {}
    for definition in subgraphs:
        if not isinstance(definition, dict) or "id" not in definition:
            continue
        renumbered: dict[int, int] = {}
        for node in definition.get("nodes") or []:
            node_id = int(node["id"])
            if node_id in used:
                last += 1
                while last in used:
                    last += 1
                renumbered[node_id] = node_id = last
            last = max(last, node_id)
            used.add(node_id)
        found[str(definition["id"])] = _renumbered(definition, renumbered) if renumbered else definition
    return found


def _renumbered(definition: SubgraphDefinition, renumbered: Mapping[int, int]) -> SubgraphDefinition:
    copy = definition.copy()
    copy["nodes"] = [
        {**node, "id": renumbered.get(int(node["id"]), int(node["id"]))}
        for node in definition.get("nodes") or []
    ]
    links: list[EditorLink] = []
    for link in definition.get("links") or []:
        if isinstance(link, dict):
            origin, target = int(link["origin_id"]), int(link["target_id"])
            links.append(
                {
                    **link,
                    "origin_id": renumbered.get(origin, origin),
                    "target_id": renumbered.get(target, target),
                }
            )
        else:
            item = list(link)
            item[1] = renumbered.get(int(item[1]), int(item[1]))
            item[3] = renumbered.get(int(item[3]), int(item[3]))
            links.append(item)
    copy["links"] = links
    return copy


def _bypass_input(inputs: list[EditorSlot], slot: int, wanted: str) -> int | None:
    if wanted in ("*", ""):
        return slot if slot < len(inputs) else (0 if inputs else None)
    if slot < len(inputs) and _fits(str(inputs[slot].get("type")), wanted):
        return slot
    for index, candidate in enumerate(inputs):
        if str(candidate.get("type")) == wanted:
            return index
    return None


def _fits(input_type: str, output_type: str) -> bool:
    if "*" in (input_type, output_type):
        return True
    return bool(set(input_type.split(",")) & set(output_type.split(",")))


def _where(scope: Scope) -> str:
    if scope.definition is None:
        return "workflow"
    return f"subgraph {scope.definition.get('name') or scope.definition.get('id')!r}"


def _wrapped(value: JsonValue) -> JsonValue:
    # A list in an API graph is a link; the editor wraps a list value so that it stays a value.
    return {"__value__": value} if isinstance(value, list) else value


def widget_inputs(values: JsonValue, definition: NodeClass) -> dict[str, JsonValue]:
    """The inputs a node's ``widgets_values`` give, named by the node definition's widget order.

    A "control after generate" value after a seed is skipped; a dynamic combo's chosen option brings its
    own widgets next; missing values take the definition's default, as a new widget in the editor would.
    """
    if isinstance(values, dict):  # some nodes keep their widgets by name
        return {
            spec.name: _wrapped(values[spec.name])
            for spec in _widgets_by_name(definition)
            if spec.name in values
        }
    remaining = list(values) if isinstance(values, list) else []
    found: dict[str, JsonValue] = {}
    for spec in definition.inputs:
        _take(spec, remaining, found)
    return found


def _take(spec: InputSpec, remaining: list[JsonValue], found: dict[str, JsonValue]) -> None:
    if not spec.is_widget:
        return
    value = remaining.pop(0) if remaining else spec.default
    # An image comparer keeps its previews in the workflow; the editor sends it two empty names.
    found[spec.name] = _wrapped(["", ""] if spec.widget_type == "IMAGECOMPARE" else value)
    if spec.has_control and remaining and remaining[0] in CONTROL_VALUES:
        remaining.pop(0)
    if spec.options.get("file_upload"):
        del remaining[:FILE_UPLOAD_BUTTONS]  # the 3D loader's buttons keep values right after its file
    if spec.type == DYNAMIC_COMBO:
        for inner in spec.dynamic_options().get(str(value), ()):
            _take(inner, remaining, found)


def _widgets_by_name(definition: NodeClass) -> Iterator[InputSpec]:
    return (spec for spec in definition.all_inputs() if spec.is_widget)


def convert_workflow(document: EditorWorkflow, catalog: Catalog, source: str) -> ApiGraph:
    """The API graph of an editor-format workflow, as the editor's "Save (API)" makes it."""
    return Converter(document, catalog, source).convert()
