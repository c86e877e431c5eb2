"""Every template va ships (assets/workflows/) against a real ComfyUI 0.26's node definitions (the committed
/object_info snapshot): node classes exist, bound inputs exist with a compatible type, values within
min/max/step, segment templates' lengths of their contract's form - the check of ``va workflow check``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from va.comfyui.catalog import Catalog, load_catalog_file
from va.comfyui.template_check import check_template
from va.comfyui.workflow import REPO_WORKFLOWS, Workflow, load_workflow

SNAPSHOT = Path(__file__).resolve().parent.parent / "data" / "comfyui_object_info_0.26.json.gz"
SHIPPED = sorted(
    p.name.removesuffix(".json") for p in REPO_WORKFLOWS.glob("*.json") if ".bindings" not in p.name
)
SEGMENT_TEMPLATES = ["humo_segment", "wan21_infinitetalk_segment", "wan22_s2v_segment"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog_file(SNAPSHOT)


def test_the_segment_templates_are_shipped() -> None:
    assert set(SEGMENT_TEMPLATES) <= set(SHIPPED)


@pytest.mark.parametrize("template_id", SHIPPED)
def test_shipped_template_fits_comfyui_0_26(template_id: str, catalog: Catalog) -> None:
    workflow = load_workflow(template_id)
    assert workflow.source.startswith(str(REPO_WORKFLOWS))
    result = check_template(workflow, catalog)
    assert result.problems == []
    assert result.bindings >= 1


@pytest.mark.parametrize("template_id", SEGMENT_TEMPLATES)
def test_segment_template_binds_the_voice_and_its_length(template_id: str, catalog: Catalog) -> None:
    workflow = load_workflow(template_id)
    assert workflow.segments is not None and workflow.lipsync_in_model
    assert workflow.segments.frame_form == "4n+1" and workflow.segments.sample_rate == 16000
    (frames,) = workflow.bindings["frames"]
    node = workflow.graph[frames["node"]]
    spec = catalog.get(node["class_type"]).input(frames["input"])  # type: ignore[union-attr]
    assert spec is not None and spec.options["step"] == 4 and spec.options["min"] == 1
    assert node["inputs"][frames["input"]] == workflow.segments.max_frames
    (audio,) = workflow.bindings["audio"]
    assert workflow.graph[audio["node"]]["class_type"] == "LoadAudio"
    chained = "previous_frames" in workflow.bindings
    assert chained == (workflow.segments.context_frames > 0)


def test_a_contract_of_another_form_is_a_problem(catalog: Catalog) -> None:
    shipped = load_workflow("humo_segment")
    assert shipped.segments is not None
    wrong = Workflow(
        "wrong",
        shipped.graph,
        shipped.bindings,
        "test",
        segments=type(shipped.segments)(fps=25, max_frames=98, frame_form="2n+0"),
    )
    problems = check_template(wrong, catalog).problems
    assert any("length at max_frames 98 is off its step 4" in p for p in problems)
    assert any("takes 4n+1 frames, the contract says 2n+0" in p for p in problems)


def test_segment_templates_name_their_model_files_in_the_docs() -> None:
    docs = (REPO_WORKFLOWS.parent.parent / "docs" / "COMFYUI_INTERFACE.md").read_text(encoding="utf-8")
    for template_id in SEGMENT_TEMPLATES:
        graph = json.loads((REPO_WORKFLOWS / f"{template_id}.json").read_text())
        models = {v for n in graph.values() for v in n["inputs"].values() if str(v).endswith(".safetensors")}
        assert template_id in docs
        assert all(model in docs for model in models), models
