"""``va workflow import``: an editor-format workflow (a file, or an official template by name) becomes a
template va can run, ``W.json`` and a proposed ``W.bindings.json``, where va looks for templates."""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from va import schema
from va.atomic import write_text_atomic
from va.comfyui.catalog import Catalog
from va.comfyui.importer import convert_workflow, parse_workflow
from va.comfyui.proposal import Proposal, propose_bindings
from va.comfyui.protocol import ApiGraph, Bindings, SegmentsBlock
from va.comfyui.workflow import check_bindings, graph_json, workflow_dirs
from va.errors import ExitCode, VaError, not_a_file

#: The PyPI packages of ComfyUI's official templates (editor format, under ``templates/``), in the order
#: they are searched; ``comfyui-workflow-templates-media-video`` holds the audio-driven video ones.
OFFICIAL_PACKAGES = (
    "comfyui_workflow_templates_media_video",
    "comfyui_workflow_templates_media_image",
    "comfyui_workflow_templates_media_other",
    "comfyui_workflow_templates_media_api",
)


@dataclass(frozen=True)
class WorkflowText:
    """A workflow's text, where it was read, and the template id it suggests."""

    text: str
    source: str
    stem: str


@dataclass(frozen=True)
class Imported:
    """What an import made: the graph, the proposal, and the files written."""

    graph: ApiGraph
    proposal: Proposal
    graph_path: Path
    bindings_path: Path


def read_workflow_file(path: Path) -> WorkflowText:
    """The text of a workflow file (exit 11 when it is not a readable file)."""
    if not path.is_file():
        raise not_a_file("workflow", path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{path}: not JSON ({exc})") from None
    return WorkflowText(text, str(path), path.stem)


def official_packages() -> list[Path]:
    """The template folders of the official packages installed here."""
    folders = []
    for name in OFFICIAL_PACKAGES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        folder = Path(str(module.__file__)).parent / "templates"
        if folder.is_dir():
            folders.append(folder)
    return folders


def official_names(folders: list[Path]) -> list[str]:
    """Every official template name in ``folders`` (their workflow files, without ``.json``)."""
    return sorted({p.stem for folder in folders for p in folder.glob("*.json") if p.stem != "index"})


def read_official(name: str) -> WorkflowText:
    """The official template ``name`` from the installed template packages (exit 20 when none is)."""
    folders = official_packages()
    if not folders:
        raise VaError(
            ExitCode.DEPENDENCY_MISSING,
            "the official templates are not installed: pip install comfyui-workflow-templates-media-video "
            "(or va[templates])",
        )
    for folder in folders:
        path = folder / f"{name}.json"
        if path.is_file():
            return WorkflowText(path.read_text(encoding="utf-8"), f"official template {name}", name)
    near = [known for known in official_names(folders) if name.split("_", maxsplit=1)[0] in known][:5]
    hint = f"; e.g. {', '.join(near)}" if near else ""
    raise VaError(ExitCode.VALIDATION_FAILED, f"no official template named {name!r}{hint}")


def import_workflow(
    workflow: WorkflowText, catalog: Catalog, name: str | None, out: Path | None, force: bool
) -> Imported:
    """Convert ``workflow`` and write ``W.json`` and ``W.bindings.json`` into ``out`` (else the state dir's
    ``comfyui/workflows/``). Nothing is written when the workflow is refused or a template of that name
    exists (unless ``force``)."""
    template_id = name or workflow.stem
    if not template_id or "/" in template_id or template_id.startswith("."):
        raise VaError(ExitCode.USAGE, f"not a template name: {template_id!r}")
    document = parse_workflow(workflow.text, workflow.source)
    graph = convert_workflow(document, catalog, workflow.source)
    if not graph:
        raise VaError(
            ExitCode.VALIDATION_FAILED, f"{workflow.source}: no node reaches the server (all notes, muted)"
        )
    proposal = propose_bindings(graph, catalog)
    check_bindings(template_id, graph, proposal.bindings)
    bindings = proposal.document(f"proposed by va workflow import from {workflow.source}")
    schema.validate(bindings, "bindings", f"{template_id}.bindings.json")
    folder = out if out is not None else workflow_dirs()[0]
    graph_path = folder / f"{template_id}.json"
    bindings_path = folder / f"{template_id}.bindings.json"
    for path in (graph_path, bindings_path):
        if path.exists() and not force:
            raise VaError(
                ExitCode.OUTPUT_EXISTS, f"template {template_id}: {path} exists (--force replaces it)"
            )
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(graph_path, graph_json(graph))
    write_text_atomic(bindings_path, json.dumps(bindings, indent=2) + "\n")
    return Imported(graph, proposal, graph_path, bindings_path)


def describe_import(imported: Imported) -> list[str]:
    """The lines ``va workflow import`` prints: the files, each binding, and what it left undecided."""
    lines = [f"wrote {imported.graph_path} ({len(imported.graph)} nodes) and {imported.bindings_path}"]
    for parameter, targets in imported.proposal.bindings.items():
        where = ", ".join(
            f"{t['node']} ({imported.graph[t['node']]['class_type']}).{t['input']}" for t in targets
        )
        lines.append(f"  bound {parameter}: {where}")
    if imported.proposal.segments is not None:
        lines.append(f"  segments: {json.dumps(imported.proposal.segments)}")
    lines.extend(f"  not decided: {note}" for note in imported.proposal.undecided)
    return lines


class ImportSummary(TypedDict):
    """What ``va workflow import --json`` prints: the files written, the graph's size, the bindings, the
    segment contract and what was left undecided."""

    graph: str
    bindings: str
    nodes: int
    bound: Bindings
    segments: SegmentsBlock | None
    undecided: list[str]


def as_json(imported: Imported) -> ImportSummary:
    """The import's result as JSON (``--json``)."""
    return {
        "graph": str(imported.graph_path),
        "bindings": str(imported.bindings_path),
        "nodes": len(imported.graph),
        "bound": imported.proposal.bindings,
        "segments": imported.proposal.segments,
        "undecided": imported.proposal.undecided,
    }
