"""va/comfyui/workflow.py: a template's bindings file, its segment contract and the parameters only a
template that generates segments may bind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from va.comfyui.workflow import load_workflow
from va.errors import ExitCode, VaError
from va.segments import SegmentContract

GRAPH = {
    "1": {"class_type": "LoadAudio", "inputs": {"audio": "x.wav"}},
    "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}},
    "3": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 25, "audio": ["1", 0]}},
    "4": {
        "class_type": "SaveVideo",
        "inputs": {"video": ["3", 0], "filename_prefix": "s", "format": "mp4", "codec": "h264"},
    },
}


def write_template(folder: Path, name: str, **bindings_file: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(GRAPH))
    document = {
        "schema_version": 1,
        "bindings": {"audio": [{"node": "1", "input": "audio"}]},
        **bindings_file,
    }
    (folder / f"{name}.bindings.json").write_text(json.dumps(document))


def test_a_segment_contract_is_read_with_its_defaults(state_dir: Path) -> None:
    folder = state_dir / "comfyui" / "workflows"
    write_template(
        folder, "talk", segments={"fps": 25, "max_frames": 33, "frame_form": "4n+1"}, lipsync_in_model=True
    )
    workflow = load_workflow("talk")
    assert workflow.segments == SegmentContract(fps=25, max_frames=33, frame_form="4n+1", sample_rate=16000)
    assert workflow.lipsync_in_model
    assert not workflow.chained


def test_segment_parameters_need_a_contract(state_dir: Path) -> None:
    write_template(state_dir / "comfyui" / "workflows", "loose")
    with pytest.raises(VaError) as raised:
        load_workflow("loose")
    assert raised.value.code == ExitCode.VALIDATION_FAILED
    assert raised.value.message.startswith("workflow loose: binding 'audio' needs a \"segments\" contract")


def test_an_unknown_contract_field_is_refused_by_the_schema(state_dir: Path) -> None:
    write_template(
        state_dir / "comfyui" / "workflows", "typo", segments={"fps": 25, "max_frames": 33, "head_frame": 9}
    )
    with pytest.raises(VaError) as raised:
        load_workflow("typo")
    assert raised.value.code == ExitCode.VALIDATION_FAILED
    assert "head_frame" in raised.value.message
