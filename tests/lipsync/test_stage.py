"""va/lipsync/stage.py in-process: the rule body (run_lipsync) on inputs made by the stages before it,
the output check, passthrough, and what a failed rule leaves in the events and the manifest."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import Media, ffprobe_streams
from tests.lipsync.conftest import UseProviders, prepare_lipsync_inputs
from tests.lipsync.fakes import command, http_provider
from tests.lipsync.lipsync_service import Service
from tests.test_motion import gray_frames
from va import stages
from va.errors import ExitCode, VaError
from va.events import read_events
from va.job import Job, load_job
from va.lipsync.stage import check_output, join_chunks, run_lipsync
from va.manifest import build_manifest
from va.plan import load_plan
from va.rule_settings import encode_settings, lipsync_settings
from va.tracking import record_run_finished, record_run_started, rule_step
from va.workdir import Workdir


@contextlib.contextmanager
def own_logging() -> Iterator[None]:
    """rule_step points the root logger at the rule's log file, as it does in the rule's own process;
    here that process is pytest's, so its handlers and level are put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


@dataclass
class Staged:
    """A job whose lip-sync rule's inputs are made (prepare_audio, hold_start_frame), as the graph makes
    them, in ``run``."""

    job: Job
    run: Workdir

    def lipsync(self) -> dict[str, Any]:
        """The rule body, called as scripts/lipsync.py calls it."""
        run = self.run
        return run_lipsync(
            lipsync_settings(load_plan(run.plan)), run.still, run.padded_audio, run.lipsync_output
        )

    def chunked(self) -> dict[str, Any]:
        """The chunks' rule bodies, as scripts/lipsync_chunk.py calls them, then the join of
        scripts/lipsync.py."""
        run = self.run
        stage = load_plan(run.plan).lipsync
        assert stage is not None and stage.chunked
        clips = [run.lipsync_chunk(chunk.name) for chunk in stage.chunks]
        for chunk, clip in zip(stage.chunks, clips, strict=True):
            run_lipsync(lipsync_settings(load_plan(run.plan), chunk.name), run.still, run.padded_audio, clip)
        return join_chunks(lipsync_settings(load_plan(run.plan)), clips, run.lipsync_output)

    def recorded(self) -> tuple[int, dict[str, Any]]:
        """The rule body in its rule_step, in a recorded run: the exit code the rule's process would end
        with and the manifest after the run's end is recorded."""
        run = self.run
        record_run_started(run, self.job)
        code = 0
        with own_logging():
            try:
                with rule_step("lipsync", run.root / "logs" / "lipsync" / "output.log", workdir=run):
                    self.lipsync()
            except SystemExit as exit_:
                code = int(str(exit_.code))
                record_run_finished(run, from_rules=True)
        manifest = build_manifest(run)
        assert manifest is not None
        return code, manifest

    def encode(self) -> Path:
        """The encode rule after the lip-sync: the final video from ``lipsync/output.mp4``."""
        run, final = self.run, self.run.final(self.job.basename)
        stages.encode(
            encode_settings(load_plan(run.plan)),
            run.still_loop,
            run.padded_aac,
            final,
            video=run.lipsync_output,
        )
        return final


Stage = Callable[..., Staged]
#: The sync record of a provider that needs no face, the check not asked for (docs/LIPSYNC_INTERFACE.md).
UNCHECKED = {
    "verdict": "no_verdict",
    "offset_frames": None,
    "confidence": None,
    "reason": "not checked: provider p needs no face (lipsync.sync_check.enable turns it on)",
}


@pytest.fixture
def stage(files: Media, use_providers: UseProviders) -> Stage:
    """``stage(provider_settings, **lipsync)``: the job (2 s tone, 320x240 still, 25 fps) with the
    provider ``p`` configured and selected, its lip-sync inputs made."""

    def make(provider: dict[str, Any], **lipsync: Any) -> Staged:
        use_providers(p=provider)
        job = load_job(files.job(lipsync={"enable": True, "provider": "p", **lipsync}))
        return Staged(job, prepare_lipsync_inputs(job, files.root / "w"))

    return make


def frames(path: Path) -> int:
    return int(ffprobe_streams(path)["video"]["nb_read_frames"])


def picture_frames(path: Path) -> int:
    """Frames of the first stream of a file, a video (with or without sound)."""
    return int(probe(path)["nb_read_frames"])


def probe(path: Path) -> dict[str, Any]:
    """The first stream of a file with only one (the tool's video or audio input), frames counted."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-print_format", "json", "-show_streams", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    stream: dict[str, Any] = json.loads(out)["streams"][0]
    return stream


def test_the_audiogram_writes_the_output_and_its_result(stage: Stage) -> None:
    staged = stage({"type": "audiogram"})
    result = staged.lipsync()
    assert result == {"provider": "p", "type": "audiogram", "passthrough": False, "sync": UNCHECKED}
    assert json.loads(staged.run.lipsync_result.read_text()) == result
    assert frames(staged.run.lipsync_output) == 50
    assert not list(staged.run.lipsync_output.parent.glob(".*.tmp"))  # published by a rename


def test_the_tool_gets_the_prepared_inputs_and_its_output_is_published(stage: Stage, tmp_path: Path) -> None:
    dump = tmp_path / "told.json"
    staged = stage(command("ok", "--dump", str(dump)))
    result = staged.lipsync()
    assert result == {"provider": "p", "type": "command", "passthrough": False, "sync": UNCHECKED}
    folder = staged.run.root / "lipsync"
    argv = json.loads(dump.read_text())["argv"]
    assert argv[argv.index("--face") + 1] == str(folder / "input" / "video.mp4")
    assert argv[argv.index("--audio") + 1] == str(folder / "input" / "audio.wav")
    assert argv[argv.index("--outfile") + 1] == str(folder / "work" / "output.mp4")
    face, voice = probe(folder / "input" / "video.mp4"), probe(folder / "input" / "audio.wav")
    assert int(face["nb_read_frames"]) == 50 and face["r_frame_rate"] == "25/1"
    assert (voice["codec_name"], voice["sample_rate"], voice["channels"]) == ("pcm_s16le", "16000", 1)
    assert (folder / "output.mp4").read_bytes() == (folder / "work" / "output.mp4").read_bytes()
    assert frames(staged.encode()) == 50


def test_a_tool_output_of_another_size_becomes_the_planned_picture(stage: Stage) -> None:
    """A tool that renders at its model's size (256x256 from a 320x240 still): the final has the plan's
    320x240, the tool's picture contained in it, 50 frames at 25 fps."""
    staged = stage(command("square"))
    staged.lipsync()
    produced = probe(staged.run.lipsync_output)
    assert (produced["width"], produced["height"]) == (256, 256)
    video = ffprobe_streams(staged.encode())["video"]
    assert (video["width"], video["height"], int(video["nb_read_frames"])) == (320, 240, 50)
    assert video["r_frame_rate"] == "25/1"


@pytest.mark.parametrize(
    ("audio_seconds", "short_frames", "passes"),
    [
        (2.0, 0, True),
        (2.03, 0, True),  # the output under a frame short
        (1.97, 0, True),  # under a frame long
        (2.06, 0, False),  # more than a frame short
        (2.06, 1, True),  # ... allowed for a tool known to stop early
        (2.22, 5, True),
        (2.26, 5, False),
        (1.95, 5, False),  # more than a frame long: never allowed
    ],
)
def test_check_output_allows_a_frame_and_short_frames_more(
    clip: dict[str, Path], audio_seconds: float, short_frames: int, passes: bool
) -> None:
    # clip["video"] lasts 2.000 s at 25 fps: a frame is 0.04 s.
    if passes:
        check_output(clip["video"], audio_seconds, 25, "p", short_frames=short_frames)
        return
    with pytest.raises(VaError) as raised:
        check_output(clip["video"], audio_seconds, 25, "p", "its last line", short_frames=short_frames)
    assert raised.value.code == ExitCode.LIPSYNC_FAILED
    assert raised.value.message == (
        f"lip-sync provider p: output lasts 2.000 s, the audio {audio_seconds:.3f} s; "
        "its last output: its last line"
    )


def test_check_output_names_an_undecodable_file(tmp_path: Path) -> None:
    junk = tmp_path / "out.mp4"
    junk.write_bytes(b"\x00not a video\x00" * 64)
    with pytest.raises(VaError) as raised:
        check_output(junk, 2.0, 25, "p", "mux step failed")
    assert raised.value.code == ExitCode.LIPSYNC_FAILED
    said = "output does not decode; its last output: mux step failed"
    assert raised.value.message == f"lip-sync provider p: {said}"


@pytest.mark.parametrize(
    ("held", "code"), [(25, ExitCode.OK), (23, ExitCode.LIPSYNC_FAILED)], ids=["held-25", "held-23"]
)
def test_a_tool_known_to_stop_early_has_its_last_frame_held(stage: Stage, held: int, code: ExitCode) -> None:
    # "short" writes 1 s where the padded audio lasts 2 s: 25 frames short at 25 fps. One frame is
    # always allowed; short_frames_held allows that many more.
    staged = stage(command("short", short_frames_held=held))
    if code == ExitCode.OK:
        assert staged.lipsync()["passthrough"] is False
        assert frames(staged.encode()) == 50  # the encode holds the last frame for the 25 missing
        return
    with pytest.raises(VaError) as raised:
        staged.lipsync()
    assert raised.value.code == code
    assert "output lasts 1.000 s, the audio 2.000 s" in raised.value.message
    assert "audio features ran out after 25 frames" in raised.value.message
    assert not staged.run.lipsync_output.exists()
    assert json.loads(staged.run.lipsync_result.read_text())["error"]["code"] == code


FACE = {"pattern": "Face not detected", "kind": "input", "message": "no face found"}
OOM = {"pattern": "CUDA out of memory", "kind": "fatal", "message": "the GPU ran out of memory"}


@pytest.mark.parametrize(
    ("provider", "code", "needles"),
    [
        (
            command("face", failures=[FACE]),
            ExitCode.LIPSYNC_INPUT_REJECTED,
            ["no face found", "Ensure the video contains a face"],
        ),
        (command("face"), ExitCode.LIPSYNC_FAILED, ["exited with 1", "Face not detected"]),
        (command("silent"), ExitCode.LIPSYNC_FAILED, ["exited 0 but wrote no output", "we exit 0 anyway"]),
        (command("hang", timeout_seconds=1), ExitCode.LIPSYNC_TIMEOUT, ["did not finish within 1 s"]),
        (
            command("short"),
            ExitCode.LIPSYNC_FAILED,
            ["output lasts 1.0", "the audio 2.000 s", "audio features ran out after 25 frames"],
        ),
        (command("corrupt"), ExitCode.LIPSYNC_FAILED, ["output does not decode", "ffmpeg mux step failed"]),
        (
            command("oom", retries=2, failures=[OOM]),
            ExitCode.LIPSYNC_FAILED,
            ["the GPU ran out of memory", "Tried to allocate 2.00 GiB"],
        ),
        ("failed", ExitCode.LIPSYNC_FAILED, ["failed: model crashed"]),
        ("500", ExitCode.LIPSYNC_UNAVAILABLE, ["submit failed after 2 attempt(s): HTTP 500"]),
    ],
    ids=[
        "face-error",
        "face-unclassified",
        "exit-0-no-output",
        "hang",
        "too-short",
        "undecodable",
        "fatal",
        "http-job-failed",
        "http-submit-500",
    ],
)
def test_a_failure_is_recorded_with_its_code_and_the_providers_last_lines(
    stage: Stage, service: Service, provider: dict[str, Any] | str, code: ExitCode, needles: list[str]
) -> None:
    if isinstance(provider, str):  # an http fault of the service double
        service.fault = provider
        provider = http_provider(service.url, retries=1)
    staged = stage(provider)
    exit_code, manifest = staged.recorded()
    assert exit_code == code
    (failed,) = [e for e in read_events(staged.run.events) if e["kind"] == "rule_failed"]
    message = failed["message"]
    assert "\n" not in message and "Traceback" not in message  # one line for the user's terminal
    for needle in needles:  # the provider's own last lines reach events.jsonl, not only the terminal
        assert needle in message
    assert failed["error"]["code"] == code
    assert manifest["phases"]["lipsync"]["status"] == "failed"
    assert manifest["exit_status"]["code"] == code and manifest["exit_status"]["message"] == message
    assert not staged.run.lipsync_output.exists()  # so the encode, which needs it, never runs


def test_passthrough_continues_with_the_unsynced_video(stage: Stage) -> None:
    staged = stage(command("face"), allow_passthrough=True)
    code, manifest = staged.recorded()
    assert code == 0
    folder = staged.run.root / "lipsync"
    assert (folder / "output.mp4").read_bytes() == (folder / "input" / "video.mp4").read_bytes()
    result = json.loads(staged.run.lipsync_result.read_text())
    assert result["passthrough"] is True and result["error"]["code"] == ExitCode.LIPSYNC_FAILED
    lipsync = manifest["phases"]["lipsync"]
    assert lipsync["status"] == "done" and lipsync["passthrough"] is True
    assert "un-synced video was used" in lipsync["note"] and "Face not detected" in lipsync["note"]
    assert frames(staged.encode()) == 50


@pytest.mark.parametrize(
    ("model", "quantum", "padded", "refusal"),
    [
        (("--frame-multiple", "16"), {"frame_multiple": 16}, 64, "output lasts 1.920 s, the audio 2.000 s"),
        (("--frame-form", "4n+1"), {"frame_form": "4n+1"}, 53, "the number of frames must be 4n+1, got 50"),
    ],
    ids=["windows-of-16", "4n+1"],
)
@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "declared"])
def test_a_models_frame_quantum_is_padded_up_and_trimmed_back(
    stage: Stage, model: tuple[str, ...], quantum: dict[str, Any], padded: int, refusal: str, declared: bool
) -> None:
    # The padded audio is 50 frames long at 25 fps. A model working in windows of 16 frames returns 48;
    # one that needs 4n+1 frames refuses 50.
    staged = stage(command("ok", *model, input={"fps": 25, **(quantum if declared else {})}))
    if not declared:
        with pytest.raises(VaError) as raised:
            staged.lipsync()
        assert refusal in raised.value.message
        return
    staged.lipsync()
    folder = staged.run.root / "lipsync"
    assert int(probe(folder / "input" / "video.mp4")["nb_read_frames"]) == padded  # last frame held
    assert float(probe(folder / "input" / "audio.wav")["duration"]) == padded / 25  # silence added
    assert picture_frames(folder / "work" / "output.mp4") == padded
    assert picture_frames(staged.run.lipsync_output) == 50  # trimmed back to the plan's frames
    assert frames(staged.encode()) == 50


def test_an_audio_longer_than_the_model_takes_is_run_in_chunks_and_joined(stage: Stage) -> None:
    refusing = ("--max-seconds", "0.8")
    with pytest.raises(VaError) as raised:
        stage(command("ok", *refusing)).lipsync()
    assert "audio of 2.00 s exceeds the model's 0.8 s" in raised.value.message


def test_chunks_of_at_most_max_seconds_are_joined_frame_exactly(stage: Stage) -> None:
    staged = stage(
        command(
            "ok",
            "--max-seconds",
            "0.8",
            "--frame-form",
            "4n+1",
            input={"fps": 25, "max_seconds": 0.8, "frame_form": "4n+1"},
        )
    )
    result = staged.chunked()
    assert result == {
        "provider": "p",
        "type": "command",
        "passthrough": False,
        "chunks": 3,
        "sync": UNCHECKED,
    }
    clips = [staged.run.lipsync_chunk(name) for name in ("0000", "0001", "0002")]
    assert [picture_frames(clip) for clip in clips] == [
        17,
        17,
        16,
    ]  # 4n+1 frames of at most 0.8 s, trimmed back
    inputs = [
        staged.run.root / "lipsync" / "chunks" / name / "input" / "audio.wav" for name in ("0000", "0002")
    ]
    assert [float(probe(path)["duration"]) for path in inputs] == [0.68, 0.68]  # the last padded to 17 frames
    assert picture_frames(staged.run.lipsync_output) == 50
    assert frames(staged.encode()) == 50


def test_with_passthrough_a_refused_chunk_is_joined_unsynced_and_the_others_synced(stage: Stage) -> None:
    # Chunks of 0.8, 0.8 and 0.4 s; the model refuses over 0.7 s, so it takes only the last.
    staged = stage(
        command("ok", "--max-seconds", "0.7", input={"fps": 25, "max_seconds": 0.8}), allow_passthrough=True
    )
    result = staged.chunked()
    assert result["passthrough"] is True and result["chunks_passed_through"] == ["0000", "0001"]
    assert "exceeds the model's 0.7 s" in result["error"]["message"]
    folder = staged.run.root / "lipsync" / "chunks"
    assert json.loads((folder / "0002" / "result.json").read_text())["passthrough"] is False
    assert picture_frames(staged.run.lipsync_output) == 50


def test_each_chunk_gets_its_own_frames_of_the_visual_stages_picture(stage: Stage, files: Media) -> None:
    # A moving picture of 50 frames (testsrc2 changes every frame) in chunks of 20, 20 and 10 frames.
    visual = files.video("visual.mp4", seconds=2.0)
    staged = stage(command("ok", input={"fps": 25, "max_seconds": 0.8}))
    run = staged.run
    for name in ("0000", "0001", "0002"):
        run_lipsync(
            lipsync_settings(load_plan(run.plan), name),
            run.still,
            run.padded_audio,
            run.lipsync_chunk(name),
            visual=visual,
        )
    source = gray_frames(visual)
    for name, first, frames in (("0000", 0, 20), ("0001", 20, 20), ("0002", 40, 10)):
        given = gray_frames(run.root / "lipsync" / "chunks" / name / "input" / "video.mp4")
        assert len(given) == frames
        # Each frame the tool got is the picture's own frame, not a neighbour (both encoded: nearly equal).
        for index in (0, frames - 1):
            distances = [np.abs(given[index] - source[n]).mean() for n in range(50)]
            assert int(np.argmin(distances)) == first + index


def test_a_remote_service_gets_one_job_a_chunk(stage: Stage, service: Service) -> None:
    staged = stage(http_provider(service.url, input={"max_seconds": 0.8}))
    assert staged.chunked()["chunks"] == 3
    assert service.submits == 3 and service.downloads == 3
    assert picture_frames(staged.run.lipsync_output) == 50
