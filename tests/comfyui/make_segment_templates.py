"""Make the shipped single-segment templates (assets/workflows/) from ComfyUI's official templates: each is
converted with va's importer against the committed /object_info snapshot, then cut down to one segment
(the official ones chain several inside one graph) and given va's bindings and the model's segment
contract. Not a test; run it again after a change, and ``tests/comfyui/test_shipped_templates.py`` checks
what it made. Needs ``comfyui-workflow-templates-media-video`` (a dev dependency).

    python tests/comfyui/make_segment_templates.py [--out assets/workflows]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from va.comfyui.catalog import load_catalog_file
from va.comfyui.importer import convert_workflow, parse_workflow
from va.comfyui.template_import import read_official
from va.comfyui.workflow import graph_json

ROOT = Path(__file__).resolve().parent.parent.parent
SNAPSHOT = ROOT / "tests" / "data" / "comfyui_object_info_0.26.json.gz"
Graph = dict[str, Any]

#: The previous segment's frames enter as an uploaded video: LoadVideo -> GetVideoComponents (images).
PREVIOUS_FRAMES: Graph = {
    "200": {
        "class_type": "LoadVideo",
        "inputs": {"file": "previous.mp4"},
        "_meta": {"title": "Previous frames"},
    },
    "201": {
        "class_type": "GetVideoComponents",
        "inputs": {"video": ["200", 0]},
        "_meta": {"title": "Frames"},
    },
}
SAVE = {"format": "mp4", "codec": "h264"}


def keep(graph: Graph, ids: list[str]) -> Graph:
    """The nodes ``ids`` of ``graph``, in that order."""
    return {node_id: graph[node_id] for node_id in ids}


def infinitetalk(graph: Graph) -> tuple[Graph, dict[str, Any]]:
    """InfiniteTalk (Wan 2.1): one speaker, one 81-frame window whose first 9 frames repeat the context."""
    sampler = ["145:19", "145:106", "145:107", "145:108", "145:120"]
    one = keep(
        graph,
        [
            "13",
            "33",
            "16",
            "14",
            "17",
            "24",
            "26",
            "25",
            "29",
            "32",
            "112",
            "129",
            *sampler,
            "119",
            "138",
            "162",
        ],
    )
    one["112"]["inputs"]["name"] = "wan2.1_infiniteTalk_single_fp16.safetensors"
    talk = one["129"]["inputs"]
    for name in [n for n in talk if n.startswith("mode.")]:
        del talk[name]
    talk.update(mode="single_speaker", width=832, height=480, length=81, previous_frames=["201", 0])
    one.update(PREVIOUS_FRAMES)
    one["138"]["inputs"].update(images=["119", 0], audio=["24", 0], fps=25)
    one["162"]["inputs"].update(SAVE, filename_prefix="va_infinitetalk")
    one["24"]["inputs"]["audio"] = "voice.wav"
    one["32"]["inputs"]["image"] = "start.png"
    bindings = {
        "start_image": [("32", "image")],
        "audio": [("24", "audio")],
        "previous_frames": [("200", "file")],
        "prompt": [("14", "text")],
        "seed": [("145:106", "noise_seed")],
        "width": [("129", "width")],
        "height": [("129", "height")],
        "frames": [("129", "length")],
        "filename_prefix": [("162", "filename_prefix")],
    }
    contract = {
        "fps": 25,
        "max_frames": 81,
        "frame_form": "4n+1",
        "sample_rate": 16000,
        "context_frames": 9,
        "head_frames": 9,
    }
    return one, document(
        "InfiniteTalk (Wan 2.1 I2V 14B 480p, single speaker): one segment of at most 81 frames at 25 fps; "
        "the previous segment's last 9 frames are its motion context and the first 9 frames of the clip",
        bindings,
        contract,
    )


def s2v(graph: Graph) -> tuple[Graph, dict[str, Any]]:
    """Wan 2.2 S2V: one 77-frame chunk; the previous frames enter as ``ref_motion`` (not repeated)."""
    one = keep(
        graph, ["37", "107", "54", "38", "6", "7", "39", "52", "57", "58", "56", "93", "3", "80", "82", "113"]
    )
    one["3"]["inputs"].update(steps=4, cfg=1.0)
    one["93"]["inputs"].update(length=77, ref_motion=["201", 0])
    one.update(PREVIOUS_FRAMES)
    one["80"]["inputs"]["samples"] = ["3", 0]
    one["82"]["inputs"].update(images=["80", 0], audio=["58", 0], fps=16)
    one["113"]["inputs"].update(SAVE, filename_prefix="va_s2v")
    one["58"]["inputs"]["audio"] = "voice.wav"
    one["52"]["inputs"]["image"] = "start.png"
    bindings = {
        "start_image": [("52", "image")],
        "audio": [("58", "audio")],
        "previous_frames": [("200", "file")],
        "prompt": [("6", "text")],
        "negative": [("7", "text")],
        "seed": [("3", "seed")],
        "width": [("93", "width")],
        "height": [("93", "height")],
        "frames": [("93", "length")],
        "filename_prefix": [("113", "filename_prefix")],
    }
    contract = {
        "fps": 16,
        "max_frames": 77,
        "frame_form": "4n+1",
        "sample_rate": 16000,
        "context_frames": 9,
        "head_frames": 0,
    }
    return one, document(
        "Wan 2.2 S2V 14B: one segment of at most 77 frames at 16 fps; the previous segment's last 9 frames "
        "guide its motion (ref_motion) and are not repeated in the clip",
        bindings,
        contract,
    )


def humo(graph: Graph) -> tuple[Graph, dict[str, Any]]:
    """HuMo: one 97-frame clip from the reference image, the text and the voice; segments independent."""
    one = dict(graph)
    one["59"]["inputs"].update(SAVE, filename_prefix="va_humo")
    one["58"]["inputs"]["audio"] = "voice.wav"
    one["49"]["inputs"]["image"] = "start.png"
    bindings = {
        "start_image": [("49", "image")],
        "audio": [("58", "audio")],
        "prompt": [("6", "text")],
        "negative": [("7", "text")],
        "seed": [("64", "seed")],
        "width": [("65", "width")],
        "height": [("65", "height")],
        "frames": [("65", "length")],
        "filename_prefix": [("59", "filename_prefix")],
    }
    contract = {
        "fps": 25,
        "max_frames": 97,
        "frame_form": "4n+1",
        "sample_rate": 16000,
        "context_frames": 0,
        "head_frames": 0,
    }
    return one, document(
        "HuMo 17B: one segment of at most 97 frames at 25 fps from the start image (its reference), the "
        "prompt and the voice; segments do not depend on each other",
        bindings,
        contract,
    )


def document(
    description: str, bindings: dict[str, list[tuple[str, str]]], contract: dict[str, Any]
) -> dict[str, Any]:
    """A bindings file that lip-syncs in the model."""
    return {
        "schema_version": 1,
        "description": description,
        "bindings": {p: [{"node": n, "input": i} for n, i in targets] for p, targets in bindings.items()},
        "segments": contract,
        "lipsync_in_model": True,
    }


TEMPLATES: dict[str, tuple[str, Callable[[Graph], tuple[Graph, dict[str, Any]]]]] = {
    "wan21_infinitetalk_segment": ("video_wan2_1_infinitetalk", infinitetalk),
    "wan22_s2v_segment": ("video_wan2_2_14B_s2v", s2v),
    "humo_segment": ("video_humo", humo),
}


def main() -> None:
    """Write every shipped segment template."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "workflows")
    args = parser.parse_args()
    catalog = load_catalog_file(SNAPSHOT)
    for template_id, (official, cut) in TEMPLATES.items():
        workflow = read_official(official)
        graph = convert_workflow(parse_workflow(workflow.text, workflow.source), catalog, workflow.source)
        one, bindings = cut(graph)
        (args.out / f"{template_id}.json").write_text(graph_json(one))
        (args.out / f"{template_id}.bindings.json").write_text(
            json.dumps(bindings, indent=2, ensure_ascii=False) + "\n"
        )
        print(f"{template_id}: {len(one)} nodes from {official}")


if __name__ == "__main__":
    main()
