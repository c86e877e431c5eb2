"""va/progress.py: what ``va run`` shows, fed a run's events in this process: rule lines, warnings, the
ComfyUI stage's progress (plain lines, or a live tqdm line on a terminal), errors left to the CLI."""

from __future__ import annotations

import io
from typing import Any

from tests.conftest import Media
from va.job import load_job
from va.plan import plan_job, write_plan
from va.progress import RunDisplay, batches_note
from va.workdir import Workdir


def planned(files: Media, frames: list[int], done: tuple[str, ...] = ()) -> Workdir:
    """A workdir whose plan (of the 2 s voice) has batches of ``frames``; the batches ``done`` have their
    record."""
    run = Workdir(files.root / "w")
    run.plan.parent.mkdir(parents=True)
    comfyui = {
        "workflow_ids": ["vidax_text2img_frames"],
        "batch_size": frames[0],
        "params": {"fps": sum(frames) // 2},
    }
    plan = plan_job(load_job(files.job(comfyui=comfyui)))
    assert plan.comfyui is not None and [batch.frames for batch in plan.comfyui.batches] == frames
    write_plan(plan, run.plan)
    for name in done:
        run.batch_result(name).parent.mkdir(parents=True, exist_ok=True)
        run.batch_result(name).write_text("{}")
    return run


def event(kind: str, level: str = "info", message: str = "", **fields: Any) -> dict[str, Any]:
    return {
        "ts": "2026-01-01T00:00:00.000Z",
        "stage": "comfyui",
        "level": level,
        "message": message,
        "kind": kind,
        **fields,
    }


def batch(name: str, *kinds: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    where = {"rule": "comfyui_batch", "target": name}
    return [event(kind, **{**where, **fields}) for kind, fields in kinds]


def made(name: str) -> list[dict[str, Any]]:
    """The events of a batch made in one attempt, its sampler at step 2 of 4 on the way."""
    return batch(
        name,
        ("rule_started", {}),
        ("comfyui_attempt", {"batch": name, "outcome": "submitted"}),
        ("progress", {"batch": name, "value": 2, "max": 4}),
        ("comfyui_attempt", {"batch": name, "outcome": "succeeded"}),
        ("rule_finished", {}),
    )


def test_plain_lines_a_batch_warnings_once_errors_never(files: Media) -> None:
    run = planned(files, [16, 16, 4], done=("0000",))  # a resumed run: batch 0000 was made before
    out = io.StringIO()
    display = RunDisplay(run.root, out, live=False)
    for e in [
        event("rule_started", rule="prepare_audio", message="prepare_audio started"),
        *batch(
            "0001",
            ("rule_started", {}),
            ("comfyui_attempt", {"level": "warning", "outcome": "transient", "message": "attempt 1"}),
            ("comfyui_waiting", {"level": "warning", "message": "waiting for ComfyUI"}),
        ),
        *made("0001")[1:],
        *batch(
            "0002",
            ("rule_started", {}),
            ("comfyui_attempt", {"level": "error", "outcome": "failed", "message": "node 3 failed"}),
            ("rule_failed", {"level": "error", "message": "node 3 failed"}),
        ),
        event("run_finished", level="error", message="run failed: node 3 failed"),
    ]:
        display(e)
    display.close()
    lines = out.getvalue().splitlines()
    assert "prepare_audio started" in lines[0]
    assert "waiting for ComfyUI" in lines[1] and len(lines) == 3
    assert lines[2].startswith("comfyui: 2 of 3 batches, 32 of 36 frames, ETA ")
    assert "failed" not in out.getvalue()  # the run's error is the CLI's last line, printed once


def test_a_terminal_gets_one_live_line_with_the_sampler_step(files: Media) -> None:
    run = planned(files, [8, 8])
    out = io.StringIO()
    display = RunDisplay(run.root, out, live=True)
    for e in made("0000") + made("0001")[:3]:
        display(e)
    assert display.bar is not None
    shown = out.getvalue().split("\r")[-1]
    assert "comfyui" in shown and "8/16" in shown and "1 of 2 batches, step 2/4" in shown
    display(event("rule_started", rule="assemble_visual", message="assemble_visual started"))
    assert display.bar is None and out.getvalue().endswith("assemble_visual started\n")


def test_batches_note() -> None:
    progress = {"batches_done": 3, "batches_total": 18, "frames_done": 48, "frames_total": 288}
    assert batches_note(progress) == "3 of 18 batches, 48 of 288 frames"
