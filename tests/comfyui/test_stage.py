"""va/comfyui/stage.py in this process, as the rules call it (scripts/comfyui_batch.py and
scripts/assemble_visual.py), against the shared ComfyUI double: the batches' files, graphs and events,
the assembled video, and every fault path's error."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.comfyui.conftest import comfy_job
from tests.conftest import Comfy, Media, ffprobe_streams
from tests.prepared import hold_start_frame_once, prepare_audio_once
from va import retry, stages
from va.comfyui import stage
from va.comfyui.assemble import assemble_visual, generated_batches
from va.comfyui.client import ComfyClient
from va.comfyui.stage import run_batch
from va.errors import ExitCode, VaError
from va.events import read_events
from va.job import Job, comfyui_active, load_job
from va.plan import (
    Batch,
    check_workflows,
    load_plan,
    plan_generation,
    plan_job,
    write_plan,
)
from va.plan_parts import RETRY_SEED_STRIDE
from va.rule_settings import (
    GenerationSettings,
    assemble_settings,
    audio_settings,
    encode_settings,
    generation_settings,
    still_settings,
)
from va.tracking import record
from va.workdir import Workdir


@dataclass
class Stage:
    """One run's workdir with its plan written, and the ComfyUI stage's steps called as the rules do."""

    job: Job
    run: Workdir
    still: Path
    backoff: list[tuple[float, float]] = field(default_factory=list)

    @property
    def plan(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run.plan.read_text())
        return data

    @property
    def settings(self) -> GenerationSettings:
        """The comfyui_batch rule's settings, as the Snakefile gives them to scripts/comfyui_batch.py."""
        settings = generation_settings(load_plan(self.run.plan))
        assert settings is not None
        return settings

    @property
    def names(self) -> list[str]:
        return [b["name"] for b in self.plan["comfyui"]["batches"]]

    def report(self, name: str) -> Callable[..., None]:
        """The reporter rule_step gives scripts/comfyui_batch.py: events of rule comfyui_batch."""
        where = {"rule": "comfyui_batch", "phase": "comfyui", "target": name}

        def report(message: str, level: str = "info", **fields: Any) -> None:
            record(self.run, "comfyui", level, message, **{"kind": "log", **fields, **where})

        return report

    def batch(self, name: str) -> dict[str, Any]:
        servers = stage.StageServers(stage.job_pool(self.job))
        try:
            return run_batch(
                self.settings,
                name,
                still=self.still,
                result=self.run.batch_result(name),
                workdir=self.run.root,
                report=self.report(name),
                servers=servers,
            )
        finally:
            servers.close()

    def every_batch(self) -> list[dict[str, Any]]:
        return [self.batch(name) for name in self.names]

    def assemble(self) -> Path:
        target = self.run.comfyui_visual
        assemble_visual(
            assemble_settings(load_plan(self.run.plan)),
            [self.run.batch_result(n) for n in self.names],
            target,
        )
        return target

    def attempts(self, batch: str | None = None) -> list[dict[str, Any]]:
        """The comfyui_attempt events (what the manifest's ``attempts`` are made of)."""
        return [
            e
            for e in read_events(self.run.events)
            if e.get("kind") == "comfyui_attempt" and batch in (None, e["batch"])
        ]

    def json(self, relative: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.run.root / relative).read_text())
        return data


StageFactory = Callable[..., Stage]


def video_of(path: Path) -> dict[str, Any]:
    """The video stream of ``comfyui/output.mp4`` (it has no audio: encode adds it), frames counted."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-print_format",
            "json",
            "-show_streams",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    stream: dict[str, Any] = json.loads(out)["streams"][0]
    return stream


@pytest.fixture
def make_stage(files: Media, comfy: Comfy, workflows: Path, monkeypatch: pytest.MonkeyPatch) -> StageFactory:
    """``make_stage(workflow, *, held_still=False, determinism=..., output=..., **comfyui)``: a job on the
    double (polling every 50 ms), its plan written, its padded audio made by the prepare_audio rule's body,
    the still by hold_start_frame's (when ``held_still``; else the start image), each once per test process
    for the same inputs (tests/prepared.py). The retry backoff is recorded instead of slept."""

    def make(
        workflow: str = "vidax_text2img_frames",
        *,
        held_still: bool = False,
        determinism: dict[str, Any] | None = None,
        output: dict[str, Any] | None = None,
        **comfyui: Any,
    ) -> Stage:
        path = comfy_job(files, comfy, workflow, **{"poll_interval_ms": 50, **comfyui})
        sections = {"determinism": determinism, "output": output}
        if any(sections.values()):
            document = json.loads(path.read_text())
            document.update({name: value for name, value in sections.items() if value})
            path.write_text(json.dumps(document))
        job, run = load_job(path), Workdir(files.root / "w")
        run.plan.parent.mkdir(parents=True, exist_ok=True)
        plan = plan_job(job)
        write_plan(plan, run.plan)
        prepare_audio_once(audio_settings(plan), run.padded_audio, run.padded_aac)
        still = files.root / "start.png"
        if held_still:
            run.still.parent.mkdir(parents=True, exist_ok=True)
            hold_start_frame_once(still_settings(plan), run.still, run.still_loop)
            still = run.still
        made = Stage(job, run, still)

        class Backoff:
            @staticmethod
            def uniform(low: float, high: float) -> float:
                made.backoff.append((low, high))
                return 0.0

        monkeypatch.setattr(retry, "random", Backoff)
        return made

    return make


# --- planning and checks -------------------------------------------------------------------------------


def test_plan_splits_the_frames_into_seeded_batches(make_stage: StageFactory) -> None:
    made = make_stage()
    generation = made.plan["comfyui"]
    assert comfyui_active(made.job)
    assert (generation["fps"], generation["frames"], generation["batch_size"]) == (25, 50, 8)
    assert [(b["name"], b["first"], b["frames"], b["seed"]) for b in generation["batches"]] == [
        (f"{i:04d}", 8 * i, 8 if i < 6 else 2, 7 + i) for i in range(7)
    ]
    assert plan_generation(made.job, 0.01, 3).batches == (
        Batch(index=0, name="0000", first=0, frames=1, seed=3),
    )


def test_generation_rate_above_the_output_rate_is_refused(files: Media, comfy: Comfy) -> None:
    job = load_job(comfy_job(files, comfy, params={"fps": 30}))
    with pytest.raises(VaError) as refused:
        plan_generation(job, 2.0, 7)
    assert refused.value.code == ExitCode.VALIDATION_FAILED
    assert "comfyui.params.fps: 30 is above determinism.fps 25" in refused.value.message


def test_binding_to_a_missing_node_names_workflow_and_node(
    files: Media, comfy: Comfy, workflows: Path
) -> None:
    (workflows / "bad_binding.json").write_text((workflows / "video_clip.json").read_text())
    bindings = {"frames": [{"node": "1", "input": "batch_size"}], "seed": [{"node": "99", "input": "seed"}]}
    (workflows / "bad_binding.bindings.json").write_text(
        json.dumps({"schema_version": 1, "bindings": bindings})
    )
    with pytest.raises(VaError) as bad:
        check_workflows(load_job(comfy_job(files, comfy, "bad_binding")))
    assert bad.value.code == ExitCode.VALIDATION_FAILED == 10
    assert bad.value.message == (
        "workflow bad_binding: binding 'seed' names node 99, which the graph does not have"
    )
    check_workflows(load_job(comfy_job(files, comfy, "video_clip")))  # a good one passes


# --- the paths that succeed ----------------------------------------------------------------------------


def test_frames_batches_and_their_assembly(make_stage: StageFactory, comfy: Comfy) -> None:
    made = make_stage()
    documents = made.every_batch()
    assert sorted(p.name for p in (made.run.root / "frames").glob("0*.png")) == [
        f"{i:06d}.png" for i in range(1, 51)
    ]
    assert [d["seed"] for d in documents] == list(range(7, 14))
    assert {d["comfyui_version"] for d in documents} == {"0.26.0"}
    assert {d["workflow"] for d in documents} == {"vidax_text2img_frames"}
    assert [d["attempts"] for d in documents] == [1] * 7
    assert [d["prompt_id"] for d in documents] == comfy.stats()["prompts"]
    assert made.json("comfyui/batches/0003.json") == documents[3]
    assert documents[3]["graph"] == "comfyui/graphs/0003-a1.json"
    assert documents[3]["kind"] == "frames" and len(documents[3]["files"]) == 8
    graph = made.json("comfyui/graphs/0003-a1.json")
    assert graph["3"]["inputs"]["seed"] == 10 and graph["5"]["inputs"]["batch_size"] == 8
    token = stage.run_token(made.run.root)
    assert graph["9"]["inputs"]["filename_prefix"] == f"va_{token}_vidax_text2img_frames_0003_a1"
    assert sorted(p.name for p in (made.run.root / "comfyui" / "graphs").iterdir()) == [
        f"{i:04d}-a1.json" for i in range(7)
    ]
    attempts = made.attempts()
    assert [(a["batch"], a["outcome"]) for a in attempts] == [
        (n, outcome) for n in made.names for outcome in ("submitted", "succeeded")
    ]
    assert all(a["rule"] == "comfyui_batch" and a["target"] == a["batch"] for a in attempts)
    steps = [e for e in read_events(made.run.events) if e.get("kind") == "progress"]
    assert steps and steps[0]["max"] == 4 and steps[0]["batch"] == "0000"
    video = video_of(made.assemble())
    assert int(video["nb_read_frames"]) == 50 and (video["width"], video["height"]) == (64, 48)
    assert video["r_frame_rate"] == "25/1"


def test_all_batches_in_one_job_over_a_connection_a_lease(make_stage: StageFactory, comfy: Comfy) -> None:
    """scripts/comfyui_batch.py's body: every batch, each a step of its own (events, log, result), side by
    side as many as the pool keeps at the server (its slot and one queued), each of those with one
    websocket and one /system_stats for all its batches; a second call submits nothing; a batch whose
    settings changed since (an edited job) and a batch whose frames were deleted are made again."""
    made = make_stage("held_start_batch", held_still=True)
    generated = made.run.root / "comfyui" / "generated.json"
    logs = made.run.root / "logs" / "comfyui" / "batches"
    stage.run_batches(
        made.settings,
        still=made.still,
        generated=generated,
        workdir=made.run,
        logs=logs,
        pool=stage.job_pool(made.job),
    )
    stats = comfy.stats()
    assert len(stats["prompts"]) == 7 and stats["ws_connections"] == 2 and stats["system_stats"] == 2
    assert 1 <= stats["uploads"] <= 2  # the still once a connection at most
    assert generated_batches(generated) == [made.run.batch_result(n) for n in made.names]
    assert sorted(p.name for p in logs.iterdir()) == [f"{n}.log" for n in made.names]
    for name in made.names:  # each batch's log holds its own lines only
        text = (logs / f"{name}.log").read_text()
        assert re.search(rf"batch {name}: \d+ file\(s\) from prompt", text)
        assert all(f"batch {other}:" not in text for other in made.names if other != name)
    steps = [(e["kind"], e["target"]) for e in read_events(made.run.events) if e["kind"].startswith("rule_")]
    for name in made.names:
        assert [kind for kind, target in steps if target == name] == ["rule_started", "rule_finished"]
    assert int(video_of(made.assemble())["nb_read_frames"]) == 50

    stage.run_batches(
        made.settings,
        still=made.still,
        generated=generated,
        workdir=made.run,
        logs=logs,
        pool=stage.job_pool(made.job),
    )
    assert len(comfy.stats()["prompts"]) == 7  # all done: nothing submitted
    (made.run.root / "frames" / "000020.png").unlink()  # batch 0002's frame
    document = made.json("comfyui/batches/0005.json")
    made.run.batch_result("0005").write_text(json.dumps({**document, "fingerprint": "an-edited-job"}))
    stage.run_batches(
        made.settings,
        still=made.still,
        generated=generated,
        workdir=made.run,
        logs=logs,
        pool=stage.job_pool(made.job),
    )
    again = [a["batch"] for a in made.attempts() if a["outcome"] == "submitted"][7:]
    assert sorted(again) == ["0002", "0005"] and len(comfy.stats()["prompts"]) == 9


def test_fewer_generated_frames_are_held_to_the_output_rate(make_stage: StageFactory) -> None:
    made = make_stage(params={"fps": 4})
    assert made.plan["comfyui"]["frames"] == 8 and made.names == ["0000"]  # 2 s at 4 fps
    made.every_batch()
    assert len(list((made.run.root / "frames").glob("0*.png"))) == 8
    assert int(video_of(made.assemble())["nb_read_frames"]) == 50


def test_start_image_template_uploads_the_still(make_stage: StageFactory, comfy: Comfy) -> None:
    made = make_stage("held_start_batch", held_still=True, batch_size=25)
    documents = made.every_batch()
    assert comfy.stats()["uploads"] == 1  # sent once: the second batch finds it on the server
    graph = made.json(documents[0]["graph"])
    assert re.fullmatch(r"va-[0-9a-f]{16}\.png", graph["1"]["inputs"]["image"])
    assert graph["2"]["inputs"]["amount"] == 25 and graph["3"]["inputs"]["width"] == 64
    assert int(video_of(made.assemble())["nb_read_frames"]) == 50


def test_video_output_template(make_stage: StageFactory) -> None:
    made = make_stage("video_clip", params={"fps": 8})
    documents = made.every_batch()
    assert [d["kind"] for d in documents] == ["video", "video"]
    clips = made.run.root / "comfyui" / "clips"
    assert sorted(p.name for p in clips.iterdir()) == ["0000.mp4", "0001.mp4"]
    assert documents[1]["files"] == [str(clips / "0001.mp4")]
    assert not list((made.run.root / "frames").glob("0*.png"))
    video = video_of(made.assemble())
    assert int(video["nb_read_frames"]) == 50 and video["r_frame_rate"] == "25/1"


def test_videohelpersuite_gifs_output(make_stage: StageFactory) -> None:
    made = make_stage("vhs_clip", params={"fps": 8})
    made.every_batch()
    assert sorted(p.name for p in (made.run.root / "comfyui" / "clips").iterdir()) == ["0000.mp4", "0001.mp4"]
    assert not list((made.run.root / "frames").glob("0*.png"))
    video = video_of(made.assemble())
    assert int(video["nb_read_frames"]) == 50 and video["r_frame_rate"] == "25/1"


def test_without_system_stats_the_version_is_unknown(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(system_stats_404=1000)
    made = make_stage(params={"fps": 4})
    (document,) = made.every_batch()
    assert document["comfyui_version"] is None
    assert not [e for e in read_events(made.run.events) if e.get("comfyui_version")]  # manifest: None


def test_without_websocket_history_polling_completes(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(ws_refuse=1000)
    made = make_stage(poll_interval_ms=100)
    made.every_batch()
    stats = comfy.stats()
    assert stats["ws_connections"] == 0 and stats["ws_refused"] >= 7
    assert len(list((made.run.root / "comfyui" / "batches").glob("*.json"))) == 7
    assert int(video_of(made.assemble())["nb_read_frames"]) == 50


def test_transient_faults_are_retried(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(prompt_500=2, drop_ws=2)
    made = make_stage()
    documents = made.every_batch()
    assert comfy.stats()["prompt_posts"] == 7 + 2
    transient = [a for a in made.attempts() if a["outcome"] == "transient"]
    assert [(a["batch"], a["attempt"]) for a in transient] == [("0000", 1), ("0000", 2)]
    assert all(a["error"] == "POST /prompt: HTTP 500" and a["level"] == "warning" for a in transient)
    assert documents[0]["attempts"] == 3 and documents[0]["graph"] == "comfyui/graphs/0000-a3.json"
    assert made.backoff == [(0, 0.5), (0, 1.0)]  # full jitter, doubling
    assert len(list((made.run.root / "frames").glob("0*.png"))) == 50


def test_per_retry_seeds_are_all_recorded(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(prompt_500=1)
    made = make_stage(determinism={"fps": 25, "seed_policy": "per_retry", "seed": 100})
    document = made.batch("0000")
    first, *_, last = made.attempts("0000")
    assert first["outcome"] == "transient" and last["outcome"] == "succeeded"
    assert (first["seed"], last["seed"]) == (100, 100 + RETRY_SEED_STRIDE) and document["seed"] == last[
        "seed"
    ]
    # every attempt keeps its graph, each with its own seed
    seeds = [made.json(f"comfyui/graphs/0000-a{n}.json")["3"]["inputs"]["seed"] for n in (1, 2)]
    assert seeds == [first["seed"], last["seed"]]


# --- the output picture: whatever size ComfyUI returned, the plan's ----------------------------------


def first_frame_rgb(video: Path) -> bytes:
    """The first frame of ``video`` as RGB bytes, rows of ``width * 3``."""
    return subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(video),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout


def test_frames_of_an_odd_size_become_an_even_final(make_stage: StageFactory) -> None:
    """ComfyUI's ImageScale returns exactly the asked 333x201: the output is that size made even (a crop,
    as a start image's), through assemble_visual and encode."""
    made = make_stage(
        "held_start_batch", held_still=True, batch_size=25, params={"width": 333, "height": 201}
    )
    assert (made.plan["geometry"]["width"], made.plan["geometry"]["height"]) == (332, 200)
    made.every_batch()
    frame = video_of(made.run.root / "frames" / "000001.png")
    assert (frame["width"], frame["height"]) == (333, 201)
    video = video_of(made.assemble())
    assert (video["width"], video["height"], int(video["nb_read_frames"])) == (332, 200, 50)
    final = made.run.final("final.mp4")
    run = made.run
    stages.encode(
        encode_settings(load_plan(run.plan)), run.still_loop, run.padded_aac, final, video=run.comfyui_visual
    )
    streams = ffprobe_streams(final)["video"]
    assert (streams["width"], streams["height"], int(streams["nb_read_frames"])) == (332, 200, 50)


def test_the_output_size_applies_to_generated_frames(make_stage: StageFactory) -> None:
    made = make_stage(params={"width": 640, "height": 360, "fps": 5}, output={"width": 1280, "height": 720})
    made.every_batch()
    assert video_of(made.run.root / "frames" / "000001.png")["width"] == 640
    video = video_of(made.assemble())
    assert (video["width"], video["height"], int(video["nb_read_frames"])) == (1280, 720, 50)


def test_a_size_comfyui_rounds_is_fitted_into_the_planned_picture(make_stage: StageFactory) -> None:
    """A sampler's frames come back at the size its latent allows (333x201 asked, 328x200 returned): they
    are contained in the planned 332x200 on the background, not stretched."""
    made = make_stage(params={"width": 333, "height": 201, "fps": 5})
    made.every_batch()
    frame = video_of(made.run.root / "frames" / "000001.png")
    assert (frame["width"], frame["height"]) == (328, 200)
    video = video_of(made.assemble())
    assert (video["width"], video["height"], int(video["nb_read_frames"])) == (332, 200, 50)


@pytest.mark.parametrize("fit", ["contain", "cover"])
def test_clips_are_fitted_on_the_background(make_stage: StageFactory, fit: str) -> None:
    """The clip template's 64x48 clips in a 96x96 output: contained (white bars above and below) or
    covering it (no bar)."""
    made = make_stage(
        "video_clip", params={"fps": 8}, output={"width": 96, "height": 96, "fit": fit, "background": "white"}
    )
    made.every_batch()
    target = made.assemble()
    video = video_of(target)
    assert (video["width"], video["height"], int(video["nb_read_frames"])) == (96, 96, 50)
    picture = first_frame_rgb(target)
    top_row, middle_row = picture[48 * 3 : 48 * 3 + 3], picture[(48 * 96 + 48) * 3 : (48 * 96 + 48) * 3 + 3]
    assert min(middle_row) < 60  # the clip itself: EmptyImage's colour of the seed, dark
    assert (min(top_row) > 200) == (fit == "contain"), list(top_row)


# --- the paths that fail -------------------------------------------------------------------------------


def test_a_prompt_whose_answer_was_lost_is_not_queued_twice(make_stage: StageFactory, comfy: Comfy) -> None:
    """ComfyUI queued the prompt but the answer never came: the next attempt finds it by our client id
    and waits on it, instead of a second POST running the same work twice on a shared server."""
    comfy.faults(prompt_no_answer=1)
    made = make_stage()
    document = made.batch("0000")
    stats = comfy.stats()
    assert stats["prompt_posts"] == 1 and stats["prompts"] == [document["prompt_id"]]
    assert len(document["files"]) == 8
    assert [a["outcome"] for a in made.attempts()] == ["transient", "submitted", "succeeded"]


def test_unavailable_after_retries(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(prompt_500=100)
    made = make_stage(retries=1, unavailable_seconds=0)
    with pytest.raises(VaError) as failed:
        made.batch("0000")
    assert failed.value.code == ExitCode.COMFYUI_UNAVAILABLE
    assert re.fullmatch(
        rf"ComfyUI at {re.escape(comfy.url)} unavailable: batch 0000 failed 2 time\(s\) in \d+ s; "
        r"last: POST /prompt: HTTP 500",
        failed.value.message,
    ), failed.value.message
    assert comfy.stats()["prompt_posts"] == 2
    assert not made.run.batch_result("0000").exists()
    assert [a["attempt"] for a in made.attempts() if a["outcome"] == "transient"] == [1, 2]


def test_refused_connections_mid_run_are_retried_then_unavailable(
    make_stage: StageFactory, comfy: Comfy
) -> None:
    comfy.faults(refuse_after_prompts=2)  # the server goes away while the second batch runs
    made = make_stage(retries=2, stall_seconds=1, unavailable_seconds=0)
    made.batch("0000")
    with pytest.raises(VaError) as failed:
        made.batch("0001")
    assert failed.value.code == ExitCode.COMFYUI_UNAVAILABLE
    assert re.search(r"batch 0001 failed 3 time\(s\) in \d+ s; last: .*ConnectionError", failed.value.message)
    assert [p.name for p in (made.run.root / "comfyui" / "batches").glob("*.json")] == ["0000.json"]
    stats = comfy.stats()
    assert len(stats["prompts"]) == 2 and stats["refused"] >= 3
    retried = [a["attempt"] for a in made.attempts("0001") if a["outcome"] == "transient"]
    assert retried == [1, 2, 3]


def test_rejected_prompt_shows_node_errors(make_stage: StageFactory, comfy: Comfy) -> None:
    made = make_stage(params={"ckpt_name": "missing.safetensors"})
    with pytest.raises(VaError) as rejected:
        made.batch("0000")
    assert rejected.value.code == ExitCode.COMFYUI_REJECTED
    assert "node 4 (CheckpointLoaderSimple) input ckpt_name: Value not in list" in rejected.value.message
    assert comfy.stats()["prompt_posts"] == 1  # a 400 is not retried
    (failed,) = made.attempts()
    assert failed["outcome"] == "failed" and failed["level"] == "error" and failed["prompt_id"] is None
    assert made.json("comfyui/graphs/0000-a1.json")["4"]["inputs"]["ckpt_name"] == "missing.safetensors"


def test_execution_error(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(execution_error=1)
    made = make_stage()
    with pytest.raises(VaError) as failed:
        made.batch("0000")
    assert failed.value.code == ExitCode.COMFYUI_FAILED
    assert failed.value.message == (
        "ComfyUI failed in node 3 (KSampler): RuntimeError: CUDA error: out of memory "
        "(injected by the test double)"
    )
    assert comfy.stats()["prompt_posts"] == 1  # not retried
    assert [a["outcome"] for a in made.attempts()] == ["submitted", "failed"]
    assert not made.run.batch_result("0000").exists()


def test_execution_error_seen_only_in_history(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(execution_error=1, ws_refuse=1000)
    made = make_stage()
    with pytest.raises(VaError) as failed:
        made.batch("0000")
    assert failed.value.code == ExitCode.COMFYUI_FAILED
    assert "node 3 (KSampler)" in failed.value.message and "out of memory" in failed.value.message


def test_lost_prompt_is_a_timeout_and_interrupted(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(lose=1)
    made = make_stage(stall_seconds=1)
    with pytest.raises(VaError) as failed:
        made.batch("0000")
    stats = comfy.stats()
    (ours,) = stats["prompts"]
    assert failed.value.code == ExitCode.COMFYUI_TIMEOUT
    assert failed.value.message == (
        f"batch 0000: no progress for 1 s and prompt {ours} is not in ComfyUI's queue"
    )
    assert stats["interrupts"] == [ours]  # one interrupt, scoped to our prompt id
    assert stats["interrupted"] == [] and stats["deleted"] == []  # nothing of ours ran or waited


def test_hanging_prompt_times_out(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(hang=1)
    made = make_stage(timeout_seconds=1)
    with pytest.raises(VaError) as failed:
        made.batch("0000")
    stats = comfy.stats()
    (ours,) = stats["prompts"]
    assert failed.value.code == ExitCode.COMFYUI_TIMEOUT
    assert failed.value.message == f"batch 0000 not finished within 1 s; prompt {ours} cancelled"
    assert stats["interrupts"] == [ours] and stats["interrupted"] == [ours] and stats["deleted"] == []
    (attempt,) = [a for a in made.attempts() if a["outcome"] == "failed"]
    assert attempt["prompt_id"] == ours


def test_a_server_with_api_jobs_is_watched_and_cancelled_through_it(
    make_stage: StageFactory, comfy: Comfy
) -> None:
    """A newer ComfyUI (GET /api/jobs/{id}, POST /api/jobs/{id}/cancel): asked once whether it has them,
    then the wait and the cancel use them; /history, /queue and /interrupt are not needed."""
    comfy.faults(jobs_api=1)
    made = make_stage(poll_interval_ms=50)
    document = made.batch("0000")
    assert len(document["files"]) == 8
    stats = comfy.stats()
    assert stats["job_requests"] >= 1 and stats["history_requests"] == 0
    comfy.faults(hang=1)
    made = make_stage(timeout_seconds=1)
    with pytest.raises(VaError) as failed:
        made.batch("0001")
    assert failed.value.code == ExitCode.COMFYUI_TIMEOUT
    stats = comfy.stats()
    ours = stats["prompts"][-1]
    assert stats["job_cancels"] == [ours] and stats["interrupted"] == [ours]
    assert stats["interrupts"] == [] and stats["history_requests"] == 0


def test_an_older_server_without_api_jobs_gets_history_and_queue(
    make_stage: StageFactory, comfy: Comfy
) -> None:
    made = make_stage()
    made.batch("0000")
    stats = comfy.stats()
    assert stats["history_requests"] >= 1 and stats["job_requests"] == 0 and stats["job_cancels"] == []


def test_timeout_while_queued_deletes_only_our_prompt(make_stage: StageFactory, comfy: Comfy) -> None:
    comfy.faults(hang=1)
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "other"}},
    }
    answer = requests.post(
        f"{comfy.url}/prompt", json={"prompt": graph, "client_id": "someone-else"}, timeout=5
    )
    other = answer.json()["prompt_id"]  # another client's prompt, running (hanging) ahead of ours
    made = make_stage(timeout_seconds=1)
    with pytest.raises(VaError) as failed:
        made.batch("0000")
    assert failed.value.code == ExitCode.COMFYUI_TIMEOUT
    stats = comfy.stats()
    ours = stats["prompts"][1]
    assert stats["deleted"] == [ours]
    assert stats["interrupts"] == [] and stats["interrupted"] == []  # the other client's prompt is left alone
    queue = requests.get(f"{comfy.url}/queue", timeout=5).json()
    assert [item[1] for item in queue["queue_running"]] == [other] and queue["queue_pending"] == []


def colour_runs(video: Path) -> list[int]:
    """How many frames in a row show the same colour (a corner away from the frame's text), in order."""
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(video),
            "-vf",
            "crop=8:8:52:36,scale=1:1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    pixels = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
    runs: list[int] = []
    for index, pixel in enumerate(pixels):
        same = index > 0 and max(abs(a - b) for a, b in zip(pixel, pixels[index - 1], strict=True)) <= 12
        if same:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def test_a_clip_at_its_own_rate_is_retimed_to_the_generation_rate(make_stage: StageFactory) -> None:
    """The template's CreateVideo keeps 25 fps while the job generates at 5 fps: each clip holds its
    batch's frames, so each frame is shown for 1/5 s, not played 5x too fast and then frozen."""
    made = make_stage("fixed_rate_clip", params={"fps": 5})
    documents = made.every_batch()
    assert [(d["clip_frames"], d["clip_fps"]) for d in documents] == [(8, 25.0), (2, 25.0)]
    video = made.assemble()
    assert int(video_of(video)["nb_read_frames"]) == 50
    assert colour_runs(video) == [5] * 10  # 10 generated frames, each held for 5 output frames


def test_an_animated_png_that_merged_frames_fails_the_batch_naming_the_clip(
    make_stage: StageFactory, comfy: Comfy
) -> None:
    """Pillow's APNG encoder (ComfyUI's SaveAnimatedPNG) merges identical frames: 8 become 1."""
    made = make_stage("animated_png", params={"fps": 8})
    with pytest.raises(VaError) as failed:
        made.batch("0000")
    assert failed.value.code == ExitCode.COMFYUI_FAILED
    assert failed.value.message == (
        "batch 0000: clip 0000.png has 1 frames at 25 fps where 8 frames at 8 fps (1.00 s) were planned"
    )
    assert not made.run.batch_result("0000").exists()
    assert comfy.stats()["prompt_posts"] == 1  # a wrong clip is not retried


def test_an_animated_webp_template_is_refused_at_validation(
    files: Media, comfy: Comfy, workflows: Path
) -> None:
    with pytest.raises(VaError) as refused:
        check_workflows(load_job(comfy_job(files, comfy, "animated_webp")))
    assert refused.value.code == ExitCode.VALIDATION_FAILED
    assert refused.value.message.startswith(
        "workflow animated_webp: node 2 (SaveAnimatedWEBP) writes animated WebP"
    )
    assert comfy.stats()["prompt_posts"] == 0


def test_prefixes_are_unique_to_the_run_the_batch_and_the_attempt(
    make_stage: StageFactory, comfy: Comfy
) -> None:
    comfy.faults(prompt_500=1)
    made = make_stage()
    made.batch("0000")
    prefixes = [made.json(f"comfyui/graphs/0000-a{n}.json")["9"]["inputs"]["filename_prefix"] for n in (1, 2)]
    token = stage.run_token(made.run.root)
    assert prefixes == [
        f"va_{token}_vidax_text2img_frames_0000_a1",
        f"va_{token}_vidax_text2img_frames_0000_a2",
    ]
    other = stage.run_token(made.run.root.parent / "another-run")
    assert other != token and re.fullmatch(r"[0-9a-f]{6}", other)


def test_a_cached_answer_whose_files_were_deleted_is_resubmitted_once(
    make_stage: StageFactory, comfy: Comfy
) -> None:
    made = make_stage()
    made.batch("0000")
    made.run.batch_result("0000").unlink()  # the batch is to be made again (a resume, another run)
    for frame in (made.run.root / "frames").glob("0*.png"):
        frame.unlink()
    requests.post(f"{comfy.url}/__double__/forget_outputs", timeout=5).raise_for_status()
    document = made.batch("0000")  # the identical graph is answered from the cache: files gone, 404
    assert len(document["files"]) == 8 and all(Path(f).is_file() for f in document["files"])
    outcomes = [a["outcome"] for a in made.attempts("0000")]
    assert outcomes == ["submitted", "succeeded", "submitted", "stale_cache", "submitted", "succeeded"]
    fresh = made.json("comfyui/graphs/0000-a1-fresh.json")["9"]["inputs"]["filename_prefix"]
    assert fresh.endswith("_0000_a1f") and document["graph"] == "comfyui/graphs/0000-a1-fresh.json"
    assert comfy.stats()["prompt_posts"] == 3


def test_errors_while_waiting_keep_the_wait_on_our_prompt(make_stage: StageFactory, comfy: Comfy) -> None:
    """/history failing while our prompt runs must not submit a second prompt beside it."""
    comfy.faults(ws_refuse=1000, history_500=4)
    made = make_stage()
    document = made.batch("0000")
    assert len(document["files"]) == 8 and document["attempts"] == 1
    assert comfy.stats()["prompt_posts"] == 1 and comfy.stats()["faults"]["history_500"] == 0
    assert [a["outcome"] for a in made.attempts()] == ["submitted", "succeeded"]


def test_a_restarted_server_that_lost_our_prompt_gets_it_again(
    make_stage: StageFactory, comfy: Comfy
) -> None:
    comfy.faults(restart=1, restart_away_ms=500)
    made = make_stage(params={"steps": 20}, stall_seconds=30)
    document = made.batch("0000")
    stats = comfy.stats()
    assert stats["restarts"] == 1 and stats["prompt_posts"] == 2
    assert len(document["files"]) == 8 and document["attempts"] == 2
    lost = [a for a in made.attempts() if a["outcome"] == "transient"]
    assert len(lost) == 1 and "went away and came back without it" in lost[0]["error"]
    assert lost[0]["prompt_id"] == stats["prompts"][0] and document["prompt_id"] == stats["prompts"][1]


BATCH_IN_A_PROCESS = """
import sys
from pathlib import Path
from va.comfyui.stage import StageServers, job_pool, run_batch
from va.job import load_job
from va.plan import load_plan
from va.rule_settings import generation_settings
from va.workdir import Workdir
root = Workdir(Path(sys.argv[2]))
run_batch(generation_settings(load_plan(root.plan)), "0000", still=Path(sys.argv[3]),
          result=root.batch_result("0000"), servers=StageServers(job_pool(load_job(Path(sys.argv[1])))),
          workdir=root.root, report=lambda message, level="info", **fields: print(message, flush=True))
"""


#: scripts/comfyui_batch.py's body: every batch, side by side.
BATCHES_IN_A_PROCESS = """
import sys
from pathlib import Path
from va.comfyui.stage import job_pool, run_batches
from va.job import load_job
from va.plan import load_plan
from va.rule_settings import generation_settings
from va.workdir import Workdir
root = Workdir(Path(sys.argv[2]))
run_batches(generation_settings(load_plan(root.plan)), still=Path(sys.argv[3]),
            generated=root.root / "comfyui" / "generated.json", workdir=root,
            logs=root.root / "logs" / "comfyui" / "batches", pool=job_pool(load_job(Path(sys.argv[1]))))
"""


def stage_in_a_process(script: str, made: Stage) -> subprocess.Popen[str]:
    """``script`` (one of the two above) run on ``made``'s job, workdir and still in a Python of its own."""
    argv = [sys.executable, "-c", script, str(made.job.path), str(made.run.root), str(made.still)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stopped_stage_cancels_every_prompt_of_its_batches(
    make_stage: StageFactory, comfy: Comfy, stop: signal.Signals
) -> None:
    """The batches run side by side (a prompt running, one queued behind it at the server): stopping the
    rule cancels both, and leaves no process of it and nothing of ours queued at the server."""
    comfy.faults(hang=1)
    made = make_stage()
    process = stage_in_a_process(BATCHES_IN_A_PROCESS, made)
    try:
        deadline = time.monotonic() + 30
        while len(comfy.stats()["prompts"]) < 2:
            assert process.poll() is None and time.monotonic() < deadline, (
                process.stderr.read() if process.stderr else ""
            )
            time.sleep(0.02)
        ours = comfy.stats()["prompts"]
        process.send_signal(stop)
        process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode != 0
    stats = comfy.stats()
    # The running one interrupted; the queued one deleted, or interrupted if it started meanwhile.
    assert ours[0] in stats["interrupted"] and set(stats["interrupted"]) <= set(ours)
    assert len(stats["prompts"]) == 2
    deadline = time.monotonic() + 10
    while ComfyClient(comfy.url).queue_ids() != (set(), set()):
        assert time.monotonic() < deadline, "a prompt of ours still runs or waits on the server"
        time.sleep(0.02)
    assert not made.run.batch_result("0000").exists()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stopped_batch_cancels_its_prompt_on_the_server(
    make_stage: StageFactory, comfy: Comfy, stop: signal.Signals
) -> None:
    """A rule stopped by Ctrl-C, by Snakemake or va (SIGTERM) or a VIDAX cancel leaves nothing of ours
    running on a shared server."""
    comfy.faults(hang=1)
    made = make_stage()
    process = stage_in_a_process(BATCH_IN_A_PROCESS, made)
    try:
        deadline = time.monotonic() + 30
        while (
            not comfy.stats()["prompts"]
            or comfy.stats()["prompts"][0] not in ComfyClient(comfy.url).queue_ids()[0]
        ):
            assert process.poll() is None and time.monotonic() < deadline, (
                process.stderr.read() if process.stderr else ""
            )
            time.sleep(0.02)
        ours = comfy.stats()["prompts"][0]
        process.send_signal(stop)
        process.communicate(timeout=30)
    finally:
        process.kill()  # a batch that did not end does not outlive its test (nor hold the double's socket)
        process.wait()
    assert process.returncode != 0
    stats = comfy.stats()
    assert stats["interrupts"] == [ours] and stats["interrupted"] == [ours]
    deadline = time.monotonic() + 10  # the double stops a hanging prompt at its next check (50 ms)
    while ComfyClient(comfy.url).queue_ids() != (set(), set()):
        assert time.monotonic() < deadline, "our prompt still runs on the server"
        time.sleep(0.02)
    assert not made.run.batch_result("0000").exists()


def test_a_comfyui_restart_is_waited_out_within_unavailable_seconds(
    make_stage: StageFactory, comfy: Comfy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No retries by count, but 30 s of budget: the server is away for 1.5 s and the batch still succeeds,
    saying each time that it waits for ComfyUI and when it tries next."""
    comfy.faults(restart=1, restart_away_ms=1500)
    made = make_stage(params={"steps": 20}, retries=0, unavailable_seconds=30)

    class LongestBackoff:
        @staticmethod
        def uniform(low: float, high: float) -> float:
            return high

    monkeypatch.setattr(retry, "random", LongestBackoff)
    document = made.batch("0000")
    assert len(document["files"]) == 8 and document["attempts"] >= 2
    waiting = [e for e in read_events(made.run.events) if e.get("kind") == "comfyui_waiting"]
    assert waiting and all(e["level"] == "warning" for e in waiting)
    assert [e["next_try_seconds"] for e in waiting][:2] == [0.5, 1.0][: len(waiting)]
    assert re.search(
        r"waiting for ComfyUI at .*; batch 0000 tries again in 0\.5 s, at \d\d:\d\d:\d\d$",
        waiting[0]["message"],
    )
