"""A ComfyUI server's node definitions (``GET /object_info``), typed: node classes, their inputs in the
editor's widget order, and where they come from (a server, a saved copy, or the snapshot va ships)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, cast

import requests

from va.comfyui.protocol import JsonValue
from va.config import load_config
from va.errors import ExitCode, VaError, not_a_file

#: A V3 dynamic combo: its chosen option brings inputs of its own, named ``<combo>.<input>``.
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
#: An input that grows one input a name of its template as the user links more (ComfyMathExpression's values).
AUTOGROW = "COMFY_AUTOGROW_V3"
#: Input types the editor draws as a widget (a value kept in ``widgets_values``), not only as a socket.
WIDGET_TYPES = frozenset(
    {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", DYNAMIC_COMBO, "COLOR", "CURVE", "IMAGECOMPARE", "LOAD_3D"}
    | {"AUDIO_RECORD"}
)
#: Options that make the editor add an upload button after the node's widgets (its value is not an input).
UploadOption = Literal["image_upload", "audio_upload", "video_upload", "file_upload", "animated_image_upload"]
UPLOAD_OPTIONS: tuple[UploadOption, ...] = (
    "image_upload",
    "audio_upload",
    "video_upload",
    "file_upload",
    "animated_image_upload",
)
#: The values of the editor's "control after generate" widget, kept in ``widgets_values`` after a seed.
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


class AutogrowTemplate(TypedDict, total=False):
    """``template`` of an autogrow input: the input it grows (``input``, a section of ``required``
    inputs) under each of ``names``, or under ``prefix`` and a number up to ``max``."""

    input: JsonValue
    names: list[str]
    prefix: str
    max: int


class InputOptions(TypedDict, total=False):
    """The options ``/object_info`` gives an input (the second item of its ``[type, options]``): those va
    reads."""

    default: JsonValue
    min: int | float
    max: int | float
    step: int | float
    widgetType: str
    forceInput: bool
    control_after_generate: bool | str
    #: A combo's choices; a dynamic combo's options (``{"key", "inputs"}``).
    options: list[JsonValue]
    template: AutogrowTemplate
    image_upload: bool
    audio_upload: bool
    video_upload: bool
    file_upload: bool
    animated_image_upload: bool


class ObjectInfoNode(TypedDict, total=False):
    """One node class of ``/object_info``: its input sections, their order, its outputs."""

    input: JsonValue
    input_order: JsonValue
    output: list[str]
    output_name: list[str]
    output_node: bool
    category: str
    display_name: str


@dataclass(frozen=True)
class InputSpec:
    """One input of a node class: its name (``mode.mask_1`` inside a dynamic combo), type and options."""

    name: str
    type: str
    options: InputOptions
    required: bool
    choices: tuple[JsonValue, ...] | None = None

    @property
    def widget_type(self) -> str:
        """The type of the widget the editor draws (``widgetType`` when the input says, else its type)."""
        return str(self.options.get("widgetType") or self.type)

    @property
    def is_widget(self) -> bool:
        """Whether the editor keeps a value for this input in ``widgets_values``."""
        return self.widget_type in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def has_control(self) -> bool:
        """Whether the editor puts a "control after generate" value after this one: when the input asks
        for it, and for an integer named ``seed`` or ``noise_seed`` that does not say."""
        if "control_after_generate" in self.options:
            return bool(self.options["control_after_generate"])
        return self.type == "INT" and self.name.rsplit(".", 1)[-1] in ("seed", "noise_seed")

    @property
    def default(self) -> JsonValue:
        """The value the editor gives a new widget."""
        if "default" in self.options:
            return self.options["default"]
        if self.type == DYNAMIC_COMBO:
            return next(iter(self.dynamic_options()), None)
        return self.choices[0] if self.choices else None

    def accepts(self, output_type: str) -> bool:
        """Whether a link from an output of ``output_type`` fits this input (``*`` and ``A,B`` lists too)."""
        if "*" in (self.type, output_type):
            return True
        mine = set(self.type.split(","))
        return bool(mine & set(output_type.split(",")))

    def dynamic_options(self) -> dict[str, tuple[InputSpec, ...]]:
        """For a dynamic combo, the inputs each option brings, by the option's key."""
        found: dict[str, tuple[InputSpec, ...]] = {}
        for option in self.options.get("options", []):
            if isinstance(option, dict) and "key" in option:
                found[str(option["key"])] = tuple(_inputs(option.get("inputs"), f"{self.name}."))
        return found


@dataclass(frozen=True)
class NodeClass:
    """One node class of the server: its inputs (required, then optional) and outputs."""

    name: str
    inputs: tuple[InputSpec, ...]
    output_types: tuple[str, ...]
    output_names: tuple[str, ...]
    is_output: bool
    category: str
    display_name: str

    def input(self, name: str) -> InputSpec | None:
        """The input called ``name``, looking into dynamic combos' options (``mode.mask_1``)."""
        for spec in self.all_inputs():
            if spec.name == name:
                return spec
        return None

    def all_inputs(self) -> Iterator[InputSpec]:
        """Every input, with those every option of a dynamic combo can bring and those an autogrow input
        grows (``values.a`` of ComfyMathExpression, in the API graph as the server takes them)."""
        yield from _nested(self.inputs)

    @property
    def has_upload(self) -> bool:
        """Whether the editor adds an upload button (a trailing value in ``widgets_values``)."""
        return any(spec.options.get(key) for spec in self.inputs for key in UPLOAD_OPTIONS)


def _grown(spec: InputSpec) -> Iterator[InputSpec]:
    """The inputs an autogrow input may grow: one a name of its template (``values.a``, ``values.b``, ...),
    of the type of the template's input."""
    template = spec.options.get("template") or AutogrowTemplate()
    section = template.get("input")
    grown = section.get("required") if isinstance(section, dict) else None
    names = list(template.get("names") or [])
    if not names and "prefix" in template:  # ``prefix`` 'image', up to ``max``: image0, image1, ...
        names = [f"{template['prefix']}{index}" for index in range(int(template.get("max") or 64))]
    for raw in grown.values() if isinstance(grown, dict) else ():
        for name in names:
            yield _input(f"{spec.name}.{name}", raw, required=False)


def _nested(specs: tuple[InputSpec, ...]) -> Iterator[InputSpec]:
    """Each input, then the inputs its dynamic combo options bring and those it grows, depth first."""
    for spec in specs:
        yield spec
        if spec.type == DYNAMIC_COMBO:
            for extra in spec.dynamic_options().values():
                yield from _nested(extra)
        if spec.type == AUTOGROW:
            yield from _grown(spec)


def _input(name: str, raw: JsonValue, required: bool) -> InputSpec:
    """An input from ``/object_info``'s ``[type, options]`` (``[[choices], options]``: an older combo)."""
    kind = raw[0] if isinstance(raw, list) and raw else raw
    given = raw[1] if isinstance(raw, list) and len(raw) > 1 else None
    # The options as the server sends them; those va reads are read defensively (InputOptions).
    options = cast(InputOptions, given) if isinstance(given, dict) else InputOptions()
    if isinstance(kind, list):  # the older combo form: the list of choices in place of a type
        return InputSpec(name, "COMBO", options, required, tuple(kind))
    choices = tuple(options["options"]) if kind == "COMBO" and "options" in options else None
    return InputSpec(name, str(kind), options, required, choices)


def _inputs(section: JsonValue, prefix: str = "", order: JsonValue = None) -> list[InputSpec]:
    """The inputs of an ``input`` section (``required``, then ``optional``), in ``order``'s order when
    the server gives one (``input_order``)."""
    specs: list[InputSpec] = []
    if not isinstance(section, dict):
        return specs
    for part, required in (("required", True), ("optional", False)):
        given = section.get(part)
        if not isinstance(given, dict):
            continue
        listed = order.get(part) if isinstance(order, dict) else None
        names = [str(name) for name in listed] if isinstance(listed, list) and listed else list(given)
        specs.extend(_input(prefix + name, given[name], required) for name in names if name in given)
    return specs


def node_class(name: str, raw: ObjectInfoNode) -> NodeClass:
    """A node class from its entry in ``/object_info``."""
    return NodeClass(
        name=name,
        inputs=tuple(_inputs(raw.get("input"), order=raw.get("input_order"))),
        output_types=tuple(str(kind) for kind in raw.get("output") or ()),
        output_names=tuple(str(kind) for kind in raw.get("output_name") or ()),
        is_output=bool(raw.get("output_node")),
        category=str(raw.get("category") or ""),
        display_name=str(raw.get("display_name") or name),
    )


@dataclass(frozen=True)
class Catalog:
    """Every node class a server offers, by name, and where the definitions were read."""

    classes: Mapping[str, NodeClass]
    source: str

    def get(self, name: str) -> NodeClass | None:
        """The node class called ``name``, if the server has it."""
        return self.classes.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.classes


def catalog_from_object_info(data: object, source: str) -> Catalog:
    """A catalog from the JSON of ``/object_info``; anything else is exit 10 naming ``source``."""
    if not isinstance(data, dict) or not data or not all(isinstance(v, dict) for v in data.values()):
        raise VaError(ExitCode.VALIDATION_FAILED, f"{source}: not the node definitions of /object_info")
    return Catalog({name: node_class(name, raw) for name, raw in data.items()}, source)


def load_catalog_file(path: Path) -> Catalog:
    """The node definitions saved in ``path`` (JSON, or gzip of JSON)."""
    if not path.is_file():
        raise not_a_file("node definitions", path)
    raw = path.read_bytes()
    try:
        text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: not JSON node definitions ({exc})") from None
    return catalog_from_object_info(data, str(path))


def load_catalog_url(url: str, timeout: float = 30.0) -> Catalog:
    """The node definitions a running server answers at ``GET /object_info`` (exit 40 when it does not)."""
    address = url.rstrip("/") + "/object_info"
    try:
        answer = requests.get(address, timeout=timeout)
        answer.raise_for_status()
        data = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise VaError(
            ExitCode.COMFYUI_UNAVAILABLE, f"ComfyUI at {url}: no node definitions from /object_info ({exc})"
        ) from None
    return catalog_from_object_info(data, address)


def load_catalog(server: str | None, object_info: Path | None) -> Catalog:
    """The node definitions of ``object_info`` (a saved copy) if given, else of the server at ``server``,
    else of the configured ComfyUI (``comfyui.url`` of vidax.json)."""
    if object_info is not None:
        return load_catalog_file(object_info)
    if server is None:
        server = str(load_config("vidax").data["comfyui"]["url"])
    return load_catalog_url(server)
