"""va/plan.py: the one planner, the typed plan and its JSON, each rule's slice of it; the core's imports."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Media
from va.job import load_job
from va.plan import (
    INPUT_NOT_FOUND,
    Batch,
    Buffer,
    Encoding,
    InputFile,
    Plan,
    Seeds,
    Visual,
    changed_fields,
    load_plan,
    plan_document,
    plan_job,
    plan_json,
    sha256_file,
    target_frames,
)
from va.rule_settings import RULE_SETTINGS, rule_settings, settings_json


@pytest.mark.parametrize(
    ("seconds", "fps", "frames"), [(3.5, 24, 84), (2.0, 25, 50), (1.3, 25, 32), (0.001, 25, 1), (0.0, 30, 1)]
)
def test_target_frames_rounds_and_is_at_least_one(seconds: float, fps: int, frames: int) -> None:
    assert target_frames(seconds, fps) == frames


def test_the_plan_holds_every_resolved_value(files: Media) -> None:
    job = load_job(
        files.job(
            buffer={"pre_seconds": 0.5, "post_seconds": 1.0},
            determinism={"fps": 24, "seed": 3},
            output={"width": 320, "height": 180, "crf": 20},
        )
    )
    plan = plan_job(job)
    assert plan.audio_input_duration_seconds == pytest.approx(2.0, abs=1e-3)
    assert plan.audio_duration_seconds == plan.visual_target_duration_seconds == pytest.approx(3.5, abs=1e-3)
    assert plan.buffer == Buffer(0.5, 1.0)
    assert (plan.fps, plan.target_frames) == (24, 84)
    assert plan.seeds == Seeds("fixed", 3) and plan.effective_params.seed == 3
    assert plan.visual_source == "held_start_frame" and plan.comfyui is None and plan.lipsync is None
    assert (plan.geometry.width, plan.geometry.height, plan.geometry.fit) == (320, 180, "contain")
    assert (plan.geometry.source_width, plan.geometry.source_height) == (320, 240)
    assert plan.encoding == Encoding(crf=20, preset="medium")  # the preset is the schema's default
    assert plan.inputs["audio"] == InputFile(str(files.root / "voice.wav"), sha256_file(job.audio))
    assert len(plan.inputs["start"].sha256) == 64 and len(plan.job_sha256) == 64
    assert set(plan.tools) >= {"va", "python", "snakemake", "ffmpeg"}


def test_plan_json_reads_back_as_the_same_typed_plan(files: Media, tmp_path: Path) -> None:
    job = load_job(files.job(comfyui={"workflow_ids": ["vidax_text2img_frames"], "batch_size": 16}))
    plan = plan_job(job)
    assert plan.comfyui is not None and len(plan.comfyui.batches) == 4  # 50 frames in batches of 16
    (tmp_path / "plan.json").write_text(plan_json(plan))
    again = load_plan(tmp_path / "plan.json")
    assert again == plan and isinstance(again.comfyui.batches[3], Batch)  # type: ignore[union-attr]
    assert again.batch("0003").frames == 2 and again.stages.visual is Visual.COMFYUI_BATCHES
    # What probing the inputs found, typed as media's records: the rules read it instead of probing again.
    assert again.start_probe is not None and again.start_probe.path == job.start
    assert (again.start_probe.width, again.start_probe.height) == (320, 240)
    assert again.voice_probe is not None and again.voice_probe.duration_seconds == pytest.approx(
        2.0, abs=1e-3
    )


def test_a_random_seed_is_drawn_once_and_kept_by_the_next_plan(files: Media) -> None:
    job = load_job(files.job(determinism={"seed_policy": "random"}))
    plan = plan_job(job)
    assert plan.seeds.policy == "random" and plan.effective_params.seed == plan.seeds.value
    assert plan_job(job, previous=plan).seeds == plan.seeds


def test_each_rule_depends_on_its_slice_of_the_plan(files: Media) -> None:
    """A changed lip-sync setting changes the lip-sync and encode slices, never a ComfyUI batch's; a
    changed fps changes every slice that uses the rate."""
    comfy = {"workflow_ids": ["vidax_text2img_frames"], "batch_size": 16}
    base = plan_job(load_job(files.job(comfyui=comfy)))
    audiogram = {"enable": True, "provider": "audiogram"}
    lipsync = plan_job(load_job(files.job(comfyui=comfy, lipsync=audiogram)))
    faster = plan_job(load_job(files.job(comfyui=comfy, determinism={"fps": 30, "seed": 7})))
    sharper = plan_job(load_job(files.job(comfyui=comfy, output={"crf": 30})))

    def differ(other: Plan) -> list[str]:
        def settings(plan: Plan, rule: str) -> str:
            return settings_json(rule_settings(plan, rule))

        return sorted(rule for rule in RULE_SETTINGS if settings(base, rule) != settings(other, rule))

    assert differ(lipsync) == ["encode", "lipsync", "lipsync_chunk"]
    assert differ(sharper) == ["assemble_visual", "camera_motion", "encode", "hold_start_frame", "stabilize"]
    assert changed_fields(base, sharper) == ["document.output", "encoding"]
    # A job without lip-sync has no lip-sync settings, whatever its rate.
    assert differ(faster) == [
        "assemble_visual",
        "camera_motion",
        "captions",
        "comfyui_batch",
        "encode",
        "hold_start_frame",
        "stabilize",
    ]
    assert sorted(changed_fields(base, faster)) == ["comfyui", "document.determinism", "fps", "target_frames"]
    assert changed_fields(None, faster) == []


def as_written(data: dict[str, Any]) -> dict[str, Any]:
    """``asdict``'s data with the inputs' probed paths as the plan writes them: strings."""
    for probe in ("voice_probe", "start_probe"):
        data[probe] = {**data[probe], "path": str(data[probe]["path"])}
    return data


def test_the_rendered_plan_is_the_dataclasses(files: Media) -> None:
    """The plan's JSON is its dataclasses (a fast ``asdict``), unset batch fields left out."""
    audiogram = {"enable": True, "provider": "audiogram"}
    still = plan_job(load_job(files.job(lipsync=audiogram, timeline=[{"start": 0.2, "end": 1.0}])))
    comfyui = {"workflow_ids": ["vidax_text2img_frames"], "batch_size": 16}
    comfy = plan_job(load_job(files.job(comfyui=comfyui)))
    assert plan_document(still) == as_written(dataclasses.asdict(still))
    rendered, expected = plan_document(comfy), as_written(dataclasses.asdict(comfy))
    unset = {"prompt", "negative", "strength", "segment"}  # no timeline: the batches carry none of them
    batches = expected["comfyui"]["batches"]
    expected["comfyui"]["batches"] = tuple({k: v for k, v in b.items() if k not in unset} for b in batches)
    assert rendered == expected


def test_sha256_of_a_missing_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"abc")
    assert sha256_file(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(tmp_path / "missing") == INPUT_NOT_FOUND


@pytest.mark.parametrize(
    "module",
    ["va.manifest", "va.plan", "va.tracking", "va.graph", "va.stages", "va.produce", "va.runner", "va.cli"],
)
def test_core_modules_load_no_stage_client(module: str) -> None:
    """The core knows the stages by their settings only: importing it in a fresh interpreter loads
    neither the HTTP nor the websocket client of the ComfyUI and lip-sync executors, nor pydantic (the
    manifest's records are TypedDicts pydantic validates in VIDAX only: a rule's process does not pay
    for loading it). The CLI and the runner load them only in the commands and runs that use them: a
    ``va produce`` of a held still loads none of them, nor the retry policy's tenacity."""
    loaded = "('requests', 'websocket', 'pydantic', 'tenacity')"
    probe = f"import sys, {module}; print(sorted(m for m in {loaded} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", f"{module} loads {done.stdout.strip()}"


def test_a_file_is_hashed_once_while_it_stays_the_same_file(tmp_path: Path) -> None:
    """The hash of an input is kept while the file keeps its identity; rewritten in place with the same
    size and its mtime put back (its ctime moves), it is read again."""
    voice = tmp_path / "voice.wav"
    voice.write_bytes(b"a" * 64)
    first = sha256_file(voice)
    assert sha256_file(voice) == first
    before = voice.stat()
    time.sleep(0.05)  # past the file system's clock tick (a few ms), so that the ctime moves
    voice.write_bytes(b"b" * 64)
    os.utime(voice, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert voice.stat().st_mtime_ns == before.st_mtime_ns and voice.stat().st_size == before.st_size
    assert sha256_file(voice) != first
    assert sha256_file(tmp_path / "gone.wav") == INPUT_NOT_FOUND


SCRIPTS = Path(__file__).parent.parent / "scripts"
#: The rule scripts that talk to a service over HTTP: ComfyUI's, and the lip-sync provider's.
TALKING_SCRIPTS = ("comfyui_batch", "comfyui_segment", "lipsync")
#: What no rule script loads: the planner, the job's checks and their JSON Schema and YAML libraries,
#: and filelock (the rules' locks are va.locks').
PLANNING_MODULES = ("va.plan", "va.job", "jsonschema", "yaml", "filelock")
#: The HTTP and websocket clients, which only the talking scripts load.
CLIENT_MODULES = ("requests", "websocket")


def test_rule_scripts_load_only_what_their_rule_needs() -> None:
    """No rule script loads the planner, the job's checks or their JSON Schema and YAML libraries (a
    rule parses its settings), nor filelock, and only the scripts that talk to ComfyUI or a lip-sync
    service load an HTTP or websocket client: each is a process of every video that would pay for them
    (docs/PERFORMANCE.md). Checked on each script's own imports, all in one fresh interpreter: the
    quiet scripts first, so a module that is there was loaded by the script named, or one before it."""
    scripts = sorted(SCRIPTS.glob("*.py"), key=lambda script: (script.stem in TALKING_SCRIPTS, script.stem))
    assert {script.stem for script in scripts} >= {"prepare_audio", "encode", *TALKING_SCRIPTS}
    probe = ["import json, sys"]
    for script in scripts:
        tree = ast.parse(script.read_text(encoding="utf-8"))
        imports = [ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        unwanted = PLANNING_MODULES + (() if script.stem in TALKING_SCRIPTS else CLIENT_MODULES)
        probe += [
            *imports,
            f"print(json.dumps([{script.stem!r}, [m for m in {unwanted!r} if m in sys.modules]]))",
        ]
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(probe)], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = dict(json.loads(line) for line in done.stdout.splitlines())
    assert set(loaded) == {script.stem for script in scripts}
    assert {script: modules for script, modules in loaded.items() if modules} == {}
