"""Fixtures of the ComfyUI tests: the installed templates (plus weight-free test templates) and a job
that uses the shared double."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Comfy, Media

REPO_WORKFLOWS = Path(__file__).resolve().parent.parent.parent / "assets" / "workflows"


@pytest.fixture
def workflows(state_dir: Path) -> Path:
    """The shipped templates installed, plus weight-free test templates: ``video_clip`` (SaveVideo, a
    clip per batch) and ``vhs_clip`` (VideoHelperSuite's VHS_VideoCombine, answered as ``gifs``)."""
    folder = state_dir / "comfyui" / "workflows"
    folder.mkdir(parents=True)
    for path in REPO_WORKFLOWS.glob("*.json"):
        shutil.copy(path, folder / path.name)
    empty = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8}},
        "3": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["2", 0], "filename_prefix": "clip", "format": "mp4", "codec": "h264"},
        },
    }
    (folder / "video_clip.json").write_text(json.dumps(empty))
    bindings = {
        "frames": [{"node": "1", "input": "batch_size"}],
        "seed": [{"node": "1", "input": "color"}],
        "fps": [{"node": "2", "input": "fps"}],
        "filename_prefix": [{"node": "3", "input": "filename_prefix"}],
    }
    (folder / "video_clip.bindings.json").write_text(json.dumps({"schema_version": 1, "bindings": bindings}))
    vhs = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 8,
                "loop_count": 0,
                "filename_prefix": "vhs",
                "format": "video/h264-mp4",
                "pingpong": False,
                "save_output": True,
            },
        },
    }
    (folder / "vhs_clip.json").write_text(json.dumps(vhs))
    vhs_bindings = {
        "frames": [{"node": "1", "input": "batch_size"}],
        "seed": [{"node": "1", "input": "color"}],
        "fps": [{"node": "2", "input": "frame_rate"}],
        "filename_prefix": [{"node": "2", "input": "filename_prefix"}],
    }
    (folder / "vhs_clip.bindings.json").write_text(
        json.dumps({"schema_version": 1, "bindings": vhs_bindings})
    )
    # The sampler template saving a clip whose CreateVideo stays at 25 fps (no fps binding), whatever the
    # job generates at: every frame a colour of its own, so the timing of each shows in the video.
    fixed = json.loads((REPO_WORKFLOWS / "vidax_text2img_frames.json").read_text())
    fixed["9"] = {"class_type": "CreateVideo", "inputs": {"images": ["8", 0], "fps": 25}}
    save = {"video": ["9", 0], "filename_prefix": "fixed", "format": "mp4", "codec": "h264"}
    fixed["10"] = {"class_type": "SaveVideo", "inputs": save}
    (folder / "fixed_rate_clip.json").write_text(json.dumps(fixed))
    fixed_bindings = json.loads((REPO_WORKFLOWS / "vidax_text2img_frames.bindings.json").read_text())
    fixed_bindings["bindings"]["filename_prefix"] = [{"node": "10", "input": "filename_prefix"}]
    (folder / "fixed_rate_clip.bindings.json").write_text(json.dumps(fixed_bindings))
    # Animated PNG and WebP of EmptyImage's identical frames: the encoder merges them.
    for kind in ("PNG", "WEBP"):
        animated = {
            "1": {"class_type": "EmptyImage", "inputs": empty["1"]["inputs"]},
            "2": {
                "class_type": f"SaveAnimated{kind}",
                "inputs": {"images": ["1", 0], "filename_prefix": "anim", "fps": 8},
            },
        }
        (folder / f"animated_{kind.lower()}.json").write_text(json.dumps(animated))
        animated_bindings = {
            "frames": [{"node": "1", "input": "batch_size"}],
            "seed": [{"node": "1", "input": "color"}],
            "fps": [{"node": "2", "input": "fps"}],
            "filename_prefix": [{"node": "2", "input": "filename_prefix"}],
        }
        (folder / f"animated_{kind.lower()}.bindings.json").write_text(
            json.dumps({"schema_version": 1, "bindings": animated_bindings})
        )
    return folder


def comfy_job(files: Media, comfy: Comfy, workflow: str = "vidax_text2img_frames", **comfyui: Any) -> Path:
    """A job (2 s tone, seed 7, 25 fps) whose visual stage is ``workflow`` on the double: batches of 8,
    2 retries, 64x48 frames in 4 sampler steps, unless ``comfyui`` says otherwise."""
    settings = {"workflow_ids": [workflow], "url": comfy.url, "batch_size": 8, "retries": 2, **comfyui}
    settings["params"] = {"width": 64, "height": 48, "steps": 4, **comfyui.get("params", {})}
    return files.job(comfyui=settings)
