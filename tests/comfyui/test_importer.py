"""``va workflow import`` and ``va workflow check``: editor-format workflows converted as the editor's own
"Save (API)" converts them (pairs made with ComfyUI's frontend), the proposed bindings, the refusals."""

from __future__ import annotations

import copy
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Comfy
from va.cli import main
from va.comfyui.catalog import Catalog, load_catalog_file
from va.comfyui.importer import convert_workflow, unique_node_ids
from va.comfyui.template_check import check_template
from va.comfyui.template_import import official_names, official_packages
from va.comfyui.workflow import Workflow, load_workflow
from va.errors import ExitCode, VaError

DATA = Path(__file__).resolve().parent.parent / "data"
SNAPSHOT = DATA / "comfyui_object_info_0.26.json.gz"
PAIRS = DATA / "comfyui_pairs"
PAIR_NAMES = sorted(p.name.removesuffix(".workflow.json") for p in PAIRS.glob("*.workflow.json"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The node definitions of the committed /object_info snapshot."""
    return load_catalog_file(SNAPSHOT)


def titled_nodes(document: dict[str, Any]) -> set[str]:
    """API ids of the nodes the user gave a title (their ``_meta.title`` must match), inside subgraphs too."""
    definitions = unique_node_ids(document, (document.get("definitions") or {}).get("subgraphs") or [])
    titled: set[str] = set()

    def walk(nodes: list[dict[str, Any]], prefix: str) -> None:
        for node in nodes:
            if node.get("title"):
                titled.add(f"{prefix}{node['id']}")
            if str(node["type"]) in definitions:
                walk(definitions[str(node["type"])]["nodes"], f"{prefix}{node['id']}:")

    walk(document["nodes"], "")
    return titled


def differences(
    mine: dict[str, Any], editor: dict[str, Any], catalog: Catalog, titled: set[str]
) -> list[str]:
    """Node by node, what differs from the editor's export. Two things are not compared: inputs the node
    class does not declare (the editor sends ``audioUI``, a preview URL with a random number, which the
    server ignores) and the title of nodes the user left untitled (the editor uses its own translations of
    the class names)."""
    found = [f"node {k} only in one" for k in sorted(set(mine) ^ set(editor))]
    for node_id in sorted(set(mine) & set(editor)):
        a, b = mine[node_id], editor[node_id]
        if a["class_type"] != b["class_type"]:
            found.append(f"node {node_id}: {a['class_type']} != {b['class_type']}")
            continue
        definition = catalog.get(a["class_type"])
        assert definition is not None
        names = {n for n in set(a["inputs"]) | set(b["inputs"]) if definition.input(n) is not None}
        for name in sorted(names):
            if a["inputs"].get(name, "<absent>") != b["inputs"].get(name, "<absent>"):
                found.append(f"node {node_id} {name}: {a['inputs'].get(name)!r} != {b['inputs'].get(name)!r}")
        if node_id in titled and a["_meta"] != b["_meta"]:
            found.append(f"node {node_id} title {a['_meta']} != {b['_meta']}")
    return found


@pytest.mark.parametrize("name", PAIR_NAMES)
def test_conversion_matches_the_editors_save_api(name: str, catalog: Catalog) -> None:
    """Each pair's API graph is what ComfyUI 0.26's frontend exported; ours matches it node for node."""
    document = json.loads((PAIRS / f"{name}.workflow.json").read_text(encoding="utf-8"))
    editor = json.loads((PAIRS / f"{name}.api.json").read_text(encoding="utf-8"))
    mine = convert_workflow(document, catalog, name)
    assert len(mine) == len(editor)
    assert differences(mine, editor, catalog, titled_nodes(document)) == []


def test_pairs_cover_what_the_editor_does(catalog: Catalog) -> None:
    """The hand-made pair holds a bypassed node, a reroute, a primitive node, a muted branch and a note;
    the others subgraphs (ids renumbered as the editor does), dynamic combos and seeds with controls."""
    document = json.loads((PAIRS / "va_editor_features.workflow.json").read_text())
    graph = convert_workflow(document, catalog, "features")
    assert {n["mode"] for n in document["nodes"]} == {0, 2, 4}
    assert graph["5"]["inputs"] == {"image": ["1", 0], "amount": 5}  # through bypass and reroute; primitive
    assert "2" not in graph and "7" not in graph and "9" not in graph
    assert graph["8"]["inputs"] == {"filename_prefix": "va_muted_branch"}  # the muted node's link dropped
    s2v = convert_workflow(
        json.loads((PAIRS / "video_wan2_2_14B_s2v.workflow.json").read_text()), catalog, "s2v"
    )
    assert "85:182" in s2v and s2v["85:182"]["class_type"] == "LatentConcat"


def test_every_official_video_template_converts_as_the_editor_does(catalog: Catalog) -> None:
    """The acceptance of issue 27: every workflow of comfyui-workflow-templates-media-video converts
    against the snapshot (the package is a dev dependency; the count is printed), and node for node as
    ComfyUI 0.26's frontend exported each (official_video_templates.api.json.gz, made as the pairs are)."""
    if importlib.util.find_spec("comfyui_workflow_templates_media_video") is None:
        pytest.skip("comfyui-workflow-templates-media-video not installed")
    folder = next(f for f in official_packages() if "media_video" in str(f))
    exported = json.loads(gzip.decompress((PAIRS / "official_video_templates.api.json.gz").read_bytes()))
    names = official_names([folder])
    unlike = {}
    for name in names:
        document = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        graph = convert_workflow(document, catalog, name)
        assert graph, name
        unlike[name] = differences(graph, exported[name], catalog, titled_nodes(document))
    print(f"\n{len(names)} of {len(names)} official video templates converted against the 0.26 snapshot")
    print(f"{sum(not d for d in unlike.values())} of {len(names)} match the editor's export node for node")
    assert len(names) == len(exported) == 59
    assert {name: d for name, d in unlike.items() if d} == {}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``va`` with ``argv``: exit code, stdout, stderr."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write(folder: Path, name: str, data: Any) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def features() -> dict[str, Any]:
    return json.loads((PAIRS / "va_editor_features.workflow.json").read_text())


def refusal_cases() -> dict[str, tuple[Any, str]]:
    unknown = features()
    unknown["nodes"][4]["type"] = "VHS_VideoCombineX"
    dangling = features()
    dangling["links"].append([10, 42, 0, 6, 0, "IMAGE"])
    dangling["nodes"][5]["inputs"][0]["link"] = 10
    looped = features()
    inner = {
        "id": "11111111-2222-4333-8444-555555555555",
        "name": "loop",
        "nodes": [],
        "links": [],
        "inputs": [],
        "outputs": [],
    }
    inner["nodes"].append({"id": 1, "type": inner["id"], "mode": 0, "inputs": [], "outputs": []})
    looped["definitions"] = {"subgraphs": [inner]}
    looped["nodes"].append({"id": 20, "type": inner["id"], "mode": 0, "inputs": [], "outputs": []})
    grouped = features()
    grouped["nodes"][4]["type"] = "workflow>frames"
    return {
        "group_node": (grouped, "is a group node of the older editor ('workflow>frames')"),
        "not_json": ("{nodes: [", "not JSON"),
        "api_format": ({"1": {"class_type": "EmptyImage", "inputs": {}}}, "already an API-format graph"),
        "unknown_type": (unknown, "'VHS_VideoCombineX', which the server"),
        "dangling_link": (dangling, "leads from node 42, which the workflow does not have"),
        "subgraph_in_itself": (
            looped,
            "subgraph 'loop' (11111111-2222-4333-8444-555555555555) contains itself",
        ),
    }


@pytest.mark.parametrize("case", sorted(refusal_cases()))
def test_a_workflow_that_cannot_be_converted_is_one_line_exit_10_nothing_written(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, words = refusal_cases()[case]
    path = write(tmp_path, "in.json", data)
    out = tmp_path / "out"
    code, _, stderr = run(
        ["workflow", "import", str(path), "--object-info", str(SNAPSHOT), "--out", str(out)], capsys
    )
    assert code == ExitCode.VALIDATION_FAILED
    assert stderr.count("\n") == 1 and words in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_import_writes_a_template_va_can_load_and_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], catalog: Catalog
) -> None:
    path = write(tmp_path, "frames.json", features())
    code, stdout, _ = run(["workflow", "import", str(path), "--object-info", str(SNAPSHOT)], capsys)
    assert code == 0
    assert "bound start_image: 1 (LoadImage).image" in stdout
    assert "bound frames" not in stdout  # RepeatImageBatch is no latent: left to the user
    workflow = load_workflow("frames")  # from the state dir, where va looks for templates
    assert workflow.bindings["start_image"] == [{"node": "1", "input": "image"}]
    assert workflow.bindings["filename_prefix"] == [
        {"node": "6", "input": "filename_prefix"},
        {"node": "8", "input": "filename_prefix"},
    ]
    # The muted branch left a SaveImage without images: the check says so, as the server would.
    missing = "node 8 (SaveImage): required input 'images' missing"
    assert check_template(workflow, catalog).problems == [missing]
    before = workflow_files = sorted(p.read_bytes() for p in Path(workflow.source).parent.glob("frames*"))
    code, _, stderr = run(["workflow", "import", str(path), "--object-info", str(SNAPSHOT)], capsys)
    assert code == ExitCode.OUTPUT_EXISTS and "--force" in stderr
    assert (
        sorted(p.read_bytes() for p in Path(workflow.source).parent.glob("frames*"))
        == before
        == workflow_files
    )


def test_proposed_bindings_of_an_audio_driven_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """HuMo (one LoadAudio, one audio-driven node): prompt and negative by the sampler's sides, the seed,
    sizes and length, the voice, and a segment contract from the model's known rate and frame form."""
    path = PAIRS / "video_humo.workflow.json"
    code, stdout, _ = run(
        ["workflow", "import", str(path), "--object-info", str(SNAPSHOT), "--out", str(tmp_path), "--json"],
        capsys,
    )
    assert code == 0
    result = json.loads(stdout)
    bound = result["bound"]
    assert bound["prompt"] == [{"node": "6", "input": "text"}] and bound["negative"] == [
        {"node": "7", "input": "text"}
    ]
    assert bound["audio"] == [{"node": "58", "input": "audio"}]
    assert bound["frames"] == [{"node": "65", "input": "length"}] and bound["seed"] == [
        {"node": "64", "input": "seed"}
    ]
    assert result["segments"] == {
        "fps": 25,
        "max_frames": 97,
        "frame_form": "4n+1",
        "sample_rate": 16000,
        "context_frames": 0,
        "head_frames": 0,
    }


def test_undecided_choices_are_named_with_node_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = PAIRS / "video_wan2_1_infinitetalk.workflow.json"
    code, stdout, _ = run(
        ["workflow", "import", str(path), "--object-info", str(SNAPSHOT), "--out", str(tmp_path)], capsys
    )
    assert code == 0
    assert "not decided: start_image: 2 candidates, 32 (LoadImage), 137 (LoadImage)" in stdout
    assert "bound prompt: 14 (CLIPTextEncode).text" in stdout  # the negative side is a ConditioningZeroOut
    assert "bound width: 149 (PrimitiveInt).value" in stdout


def test_official_template_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("comfyui_workflow_templates_media_video") is None:
        pytest.skip("comfyui-workflow-templates-media-video not installed")
    argv = [
        "workflow",
        "import",
        "--official",
        "video_humo",
        "--object-info",
        str(SNAPSHOT),
        "--out",
        str(tmp_path),
    ]
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and (tmp_path / "video_humo.json").is_file() and "bound audio" in stdout
    code, _, stderr = run([*argv[:3], "video_nothing_like_it", *argv[4:]], capsys)
    assert (
        code == ExitCode.VALIDATION_FAILED and "no official template named 'video_nothing_like_it'" in stderr
    )


def test_check_names_what_the_server_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], catalog: Catalog
) -> None:
    shipped = load_workflow("held_start_batch")
    assert check_template(shipped, catalog).ok
    graph = copy.deepcopy(shipped.graph)
    scale = next(k for k, n in graph.items() if n["class_type"] == "ImageScale")
    graph[scale]["inputs"]["crop"] = "sideways"
    graph[scale]["inputs"]["width"] = 100000
    graph["99"] = {"class_type": "NoSuchNode", "inputs": {}}
    broken = Workflow("broken", graph, shipped.bindings, "test")
    problems = check_template(broken, catalog).problems
    assert any("class 'NoSuchNode' not on the server" in p for p in problems)
    assert any("crop 'sideways' is not one of the server's choices" in p for p in problems)
    width_bound = any(t["node"] == scale and t["input"] == "width" for t in shipped.bindings.get("width", []))
    assert width_bound or any("width 100000 is above its max" in p for p in problems)


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(["workflow", "check", "held_start_batch", "--object-info", str(SNAPSHOT)], capsys)
    assert code == 0 and "held_start_batch:" in stdout
    code, _, stderr = run(["workflow", "check", "no_such_template", "--object-info", str(SNAPSHOT)], capsys)
    assert code == ExitCode.VALIDATION_FAILED and stderr.count("\n") == 1


def test_a_length_off_its_step_is_a_problem(catalog: Catalog) -> None:
    graph = convert_workflow(json.loads((PAIRS / "video_humo.workflow.json").read_text()), catalog, "humo")
    graph["65"]["inputs"]["length"] = 98
    problems = check_template(Workflow("humo", graph, {}, "test"), catalog).problems
    assert problems == ["node 65 (WanHuMoImageToVideo): length 98 is off its step 4 (from 1)"]


def test_import_needs_a_file_or_an_official_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(["workflow", "import", "--object-info", str(SNAPSHOT)], capsys)
    assert code == ExitCode.USAGE and stderr.count("\n") == 1


def test_node_definitions_that_are_not_object_info(tmp_path: Path) -> None:
    with pytest.raises(VaError) as caught:
        load_catalog_file(write(tmp_path, "oi.json", "[1, 2]"))
    assert caught.value.code == ExitCode.VALIDATION_FAILED


def test_check_and_import_ask_a_server(
    tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str], comfy: Comfy
) -> None:
    """With --server the node definitions come from GET /object_info (the double answers a real 0.26's);
    a model file the server does not list is named."""
    shipped = load_workflow("vidax_text2img_frames")
    folder = state_dir / "comfyui" / "workflows"
    folder.mkdir(parents=True)
    write(folder, "sdxl.json", shipped.graph)
    bindings = {k: v for k, v in shipped.bindings.items() if k != "ckpt_name"}  # the template's own file
    write(folder, "sdxl.bindings.json", {"schema_version": 1, "bindings": bindings})
    code, stdout, _ = run(["workflow", "check", "sdxl", "--server", comfy.url], capsys)
    assert code == 0
    missing = "checkpoints/sd_xl_base_1.0.safetensors (node 4 (CheckpointLoaderSimple): ckpt_name)"
    assert f"model file missing on the server: {missing}" in stdout
    path = write(tmp_path, "frames.json", features())
    code, stdout, _ = run(
        ["workflow", "import", str(path), "--server", comfy.url, "--out", str(tmp_path / "out")], capsys
    )
    assert code == 0 and (tmp_path / "out" / "frames.json").is_file()
    code, _, stderr = run(
        ["workflow", "check", "vidax_text2img_frames", "--server", "http://127.0.0.1:9"], capsys
    )
    assert code == ExitCode.COMFYUI_UNAVAILABLE and stderr.count("\n") == 1


def test_check_looks_at_what_leads_to_an_output_as_the_server_does(catalog: Catalog) -> None:
    """A node that feeds no output is skipped by the server (even with a missing input); a graph without
    an output node runs nothing."""
    shipped = load_workflow("held_start_batch")
    graph = copy.deepcopy(shipped.graph)
    graph["90"] = {"class_type": "ImageScale", "inputs": {"upscale_method": "bilinear"}}  # feeds nothing
    assert check_template(Workflow("dangling", graph, shipped.bindings, "test"), catalog).problems == []
    outputs = [k for k, n in graph.items() if n["class_type"] == "SaveImage"]
    for node_id in outputs:
        del graph[node_id]
    bindings = {k: v for k, v in shipped.bindings.items() if k != "filename_prefix"}
    problems = check_template(Workflow("no_output", graph, bindings, "test"), catalog).problems
    assert problems == ["no output node (SaveImage, SaveVideo, ...): the server would run nothing"]


def test_a_graph_that_chains_windows_gets_no_segment_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The official S2V template extends its clip inside the graph: one segment contract would be wrong."""
    path = PAIRS / "video_wan2_2_14B_s2v.workflow.json"
    argv = ["workflow", "import", str(path), "--object-info", str(SNAPSHOT), "--out", str(tmp_path), "--json"]
    code, stdout, _ = run(argv, capsys)
    result = json.loads(stdout)
    assert code == 0 and result["segments"] is None and "audio" not in result["bound"]
    assert any("chains windows in itself" in note and "85:184" in note for note in result["undecided"])
