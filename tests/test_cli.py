"""The CLI as a user meets it: exit codes from real bad inputs, one line, no traceback, nothing lost."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    VA,
    CliRunner,
    FinishedRun,
    Media,
    Result,
    environment,
    ffmpeg,
    ffmpeg_without_x264,
)
from va import cli
from va.errors import ExitCode, VaError
from va.job import load_job
from va.runner import RunOptions, default_workdir, graph_argv
from va.tracking import record_run_finished, record_run_started
from va.workdir import Workdir


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("va: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_validate_accepts_a_good_job_and_reports_the_frames(files: Media, va_cli: CliRunner) -> None:
    job = files.job(buffer={"pre_seconds": 0.5, "post_seconds": 1.0})
    result = va_cli("validate", job)
    assert result.code == 0, result.err
    assert "88 frames at 25 fps" in result.out  # (0.5 + 2 + 1) s * 25
    assert "picture   320x240 (contain on black; start 320x240), x264 crf 18 preset medium" in result.out
    assert "the start frame held for every frame" in result.out and "seed      7 (fixed)" in result.out
    assert sorted(p.name for p in files.root.iterdir()) == ["job.json", "start.png", "voice.wav"]


def test_missing_input_file(files: Media, va_cli: CliRunner) -> None:
    job = files.job(input={"audio": "nope.wav", "start": "start.png"})
    result = va_cli("validate", job)
    assert result.code == ExitCode.INPUT_NOT_FOUND
    assert_one_line_error(result.err, "input.audio", "nope.wav")


def test_a_folder_or_a_looped_link_where_a_file_should_be_is_named_so(
    files: Media, va_cli: CliRunner
) -> None:
    (files.root / "voices").mkdir()
    folder = va_cli("validate", files.job(input={"audio": "voices", "start": "start.png"}))
    assert folder.code == ExitCode.INPUT_NOT_FOUND
    assert_one_line_error(folder.err, "input.audio: a folder, not a file", "voices")
    (files.root / "a.png").symlink_to("b.png")
    (files.root / "b.png").symlink_to("a.png")
    loop = va_cli("validate", files.job(input={"audio": "voice.wav", "start": "a.png"}))
    assert loop.code == ExitCode.INPUT_NOT_FOUND
    assert_one_line_error(loop.err, "input.start: a link to no file", "a.png")
    os.mkfifo(files.root / "pipe.wav")  # reading it would wait for a writer forever
    pipe = va_cli("validate", files.job(input={"audio": "pipe.wav", "start": "start.png"}))
    assert pipe.code == ExitCode.INPUT_NOT_FOUND
    assert_one_line_error(
        pipe.err, "input.audio: not a regular file (a device, a pipe or a socket)", "pipe.wav"
    )
    job = va_cli("run", files.root, "--workdir", files.root / "w")
    assert job.code == ExitCode.INPUT_NOT_FOUND
    assert_one_line_error(job.err, "job file: a folder, not a file")
    assert not (files.root / "w").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workdir", ""], "argument --workdir: an empty path"),  # else the current folder
        (["--workdir", "w", "--cores", "-3"], "argument --cores: '-3' is not a whole number of at least 1"),
        (["--workdir", "w", "--cores", "0"], "argument --cores: '0' is not a whole number of at least 1"),
    ],
)
def test_an_empty_path_or_a_count_below_one_is_a_usage_error(
    files: Media, va_cli: CliRunner, args: list[str], needle: str
) -> None:
    job = files.job()
    before = sorted(p.name for p in files.root.iterdir())
    result = va_cli("run", job, *args, cwd=files.root)
    assert result.code == ExitCode.USAGE
    assert_one_line_error(result.err, needle)
    assert sorted(p.name for p in files.root.iterdir()) == before  # nothing written in the job's folder


def test_text_file_named_wav(files: Media, va_cli: CliRunner) -> None:
    (files.root / "voice.wav").write_text("RIFF? no, just words\n", encoding="utf-8")
    result = va_cli("run", files.job(), "--workdir", files.root / "w")
    assert result.code == ExitCode.UNSUPPORTED_FORMAT
    assert_one_line_error(result.err, "input.audio", "voice.wav")
    assert not (files.root / "w" / "manifest.json").exists()


def test_truncated_mp3(files: Media, va_cli: CliRunner) -> None:
    whole = files.root / "whole.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=3", str(whole))
    (files.root / "cut.mp3").write_bytes(whole.read_bytes()[:2000])
    result = va_cli("validate", files.job(input={"audio": "cut.mp3", "start": "start.png"}))
    assert result.code == ExitCode.UNSUPPORTED_FORMAT
    assert_one_line_error(result.err, "truncated", "cut.mp3")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_start_image_cut_short_is_refused_when_planned(
    files: Media, va_cli: CliRunner, suffix: str
) -> None:
    """ffmpeg fills the missing rows of a JPEG cut short with a smear and ends 0; a PNG cut short fails
    only when the run holds it. Both are refused by the plan, naming the file; the whole image, with a
    phone's trailer after its end, is taken."""
    from PIL import Image  # noqa: PLC0415

    noise = Image.frombytes("RGB", (320, 240), os.urandom(320 * 240 * 3))
    whole = files.root / f"whole{suffix}"
    noise.save(whole)
    data = whole.read_bytes()
    (files.root / f"cut{suffix}").write_bytes(data[: len(data) * 6 // 10])
    whole.write_bytes(data + b"SEFH trailer of a phone's camera")
    result = va_cli("validate", files.job(input={"audio": "voice.wav", "start": f"cut{suffix}"}))
    assert result.code == ExitCode.UNSUPPORTED_FORMAT
    assert_one_line_error(result.err, "input.start", "truncated", f"cut{suffix}")
    result = va_cli("validate", files.job(input={"audio": "voice.wav", "start": f"whole{suffix}"}))
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("name", "codecs"), [("rec.mkv", ("libx264", "aac")), ("rec.webm", ("libvpx", "libopus"))]
)
def test_a_recording_whose_sound_ends_before_its_picture_is_a_voice_of_the_sounds_length(
    files: Media, va_cli: CliRunner, name: str, codecs: tuple[str, str]
) -> None:
    """Matroska and WebM keep no length in an audio stream's header, only the file's (here the picture's,
    5 s) and a DURATION tag: the voice is the 2 s its tag says, not a 5 s file cut short."""
    video, audio = codecs
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=s=160x120:d=5", "-f", "lavfi", "-i", "sine=f=300:d=2",
        "-c:v", video, "-c:a", audio, str(files.root / name),
    )  # fmt: skip
    result = va_cli("validate", files.job(input={"audio": name, "start": "start.png"}))
    assert result.code == 0, result.err
    assert re.search(r": 2\.0\d+ s, 5\d frames at 25 fps", result.out), result.out


def test_zero_byte_image(files: Media, va_cli: CliRunner) -> None:
    (files.root / "empty.png").write_bytes(b"")
    result = va_cli("validate", files.job(input={"audio": "voice.wav", "start": "empty.png"}))
    assert result.code == ExitCode.UNSUPPORTED_FORMAT
    assert_one_line_error(result.err, "input.start", "empty.png")


def test_corrupt_image(files: Media, va_cli: CliRunner) -> None:
    (files.root / "broken.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(300))
    result = va_cli("validate", files.job(input={"audio": "voice.wav", "start": "broken.jpg"}))
    assert result.code == ExitCode.UNSUPPORTED_FORMAT
    assert_one_line_error(result.err, "broken.jpg")


def test_schema_violation_names_the_key(files: Media, va_cli: CliRunner) -> None:
    result = va_cli("validate", files.job(motion={"prompt": "x", "intensity": 3}))
    assert result.code == ExitCode.VALIDATION_FAILED
    assert_one_line_error(result.err, "motion", "'intensity'")


def test_usage_errors_exit_2(va_cli: CliRunner) -> None:
    assert va_cli("run").code == ExitCode.USAGE
    result = va_cli("render", "x")
    assert result.code == ExitCode.USAGE
    assert_one_line_error(result.err, "render")


def test_missing_ffmpeg(files: Media, va_cli: CliRunner) -> None:
    result = va_cli("validate", files.job(), env={"FFPROBE": str(files.root / "no-ffprobe")})
    assert result.code == ExitCode.DEPENDENCY_MISSING
    assert_one_line_error(result.err, "ffprobe")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_overwrite_refused_and_resume_rules(
    finished_run: FinishedRun, files: Media, va_cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VA_STATE_DIR", str(finished_run.state_root))
    job, workdir = finished_run.job, finished_run.workdir
    final = workdir / "final.mp4"
    before = (sha256(final), final.stat().st_mtime_ns, (workdir / "manifest.json").read_text())

    again = va_cli("run", job, "--workdir", workdir)
    assert again.code == ExitCode.OUTPUT_EXISTS
    assert_one_line_error(again.err, "final.mp4")
    # --resume of a complete run has nothing to do: it answers with the final, changing nothing.
    resume = va_cli("run", job, "--workdir", workdir, "--resume", "-q")
    assert resume.code == ExitCode.OK, resume.err
    assert resume.out.strip() == str(final)
    assert (sha256(final), final.stat().st_mtime_ns, (workdir / "manifest.json").read_text()) == before
    # --resume of another job on it would answer that job's video as its own: refused, in one line.
    other = va_cli("run", files.job("other.json"), "--workdir", workdir, "--resume", "-q")
    assert other.code == ExitCode.RESUME_NOT_POSSIBLE
    assert_one_line_error(other.err, "other.json")
    # ... unless the job was edited since: its finished video is not the job's now, said in one line.
    original = job.read_text()
    job.write_text(json.dumps({**json.loads(original), "buffer": {"pre_seconds": 0.0, "post_seconds": 1.0}}))
    try:
        edited = va_cli("run", job, "--workdir", workdir, "--resume")
    finally:
        job.write_text(original)
    assert edited.code == ExitCode.OUTPUT_EXISTS
    assert_one_line_error(edited.err, f"{final} was made from an earlier version of {job}", "buffer")
    assert (sha256(final), final.stat().st_mtime_ns, (workdir / "manifest.json").read_text()) == before

    fresh = va_cli("run", files.job(), "--workdir", files.root / "empty", "--resume")
    assert fresh.code == ExitCode.RESUME_NOT_POSSIBLE
    assert_one_line_error(fresh.err, "no manifest.json")


@pytest.mark.whole_run
def test_encode_failure_is_exit_60_and_leaves_no_final(files: Media, va_cli: CliRunner) -> None:
    fake = ffmpeg_without_x264(files.root)
    workdir = files.root / "w"
    result = va_cli("run", files.job(), "--workdir", workdir, "-q", env={"FFMPEG": str(fake)})
    assert result.code == ExitCode.ENCODE_FAILED
    assert_one_line_error(result.err, "libx264")
    assert not (workdir / "final.mp4").exists()
    assert not list(workdir.glob(".encode-*"))
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["run_status"] == "failed"
    assert manifest["exit_status"]["name"] == "ENCODE_FAILED"
    # The held still's two-second loop is the first thing libx264 encodes: the frames rule fails.
    assert manifest["phases"]["prepare"]["status"] == "failed"
    assert manifest["phases"]["encode"]["status"] == "pending"


@pytest.mark.whole_run
def test_produce_writes_the_job_and_fertig_mp4(files: Media, va_cli: CliRunner) -> None:
    """``va produce`` runs the job it writes; with a profile of the user's own, which applies as written:
    profiles/default's ``cores: all`` does not win over it."""
    mine = files.root / "one-core"
    mine.mkdir()
    (mine / "config.yaml").write_text("cores: 1\nrerun-incomplete: true\n")
    workdir = files.root / "w"
    result = va_cli(
        "produce",
        "--audio",
        files.root / "voice.wav",
        "--start",
        files.root / "start.png",
        "--prompt",
        "slow push-in",
        "--neg",
        "blurry",
        "--pre",
        "0.5",
        "--post",
        "0.5",
        "--width",
        "256",
        "--height",
        "144",
        "--fps",
        "24",
        "--seed",
        "42",
        "--no-comfyui",
        "--workdir",
        workdir,
        "--profile",
        mine,
        "-q",
    )
    assert result.code == 0, result.err
    log = (workdir / "logs" / "snakemake.log").read_text()
    assert "Provided cores: 1 " in log and str(mine) in log
    assert result.out.strip() == str(workdir / "fertig.mp4")
    job = json.loads((workdir / "job.json").read_text())
    assert job["output"] == {**job["output"], "basename": "fertig.mp4", "width": 256, "height": 144}
    assert job["motion"]["negative_prompt"] == "blurry"
    assert job["determinism"] == {"fps": 24, "seed_policy": "fixed", "seed": 42}
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["target_frames"] == 72 and manifest["seeds"] == {"policy": "fixed", "value": 42}


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--no-comfyui", "--lipsync", "on"), "--lipsync_provider"),
        (("--no-comfyui", "--width", "640"), "--height"),
        (("--no-comfyui", "--width", "641", "--height", "360"), "output.width"),
    ],
)
def test_produce_refuses_bad_flags_without_writing(
    files: Media, va_cli: CliRunner, flags: tuple[str, ...], needle: str
) -> None:
    workdir = files.root / "w"
    result = va_cli(
        "produce",
        "--audio",
        files.root / "voice.wav",
        "--start",
        files.root / "start.png",
        "--prompt",
        "x",
        "--workdir",
        workdir,
        *flags,
    )
    assert result.code == ExitCode.VALIDATION_FAILED
    assert_one_line_error(result.err, needle)
    assert not workdir.exists()


def test_status_and_logs(
    finished_run: FinishedRun, va_cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VA_STATE_DIR", str(finished_run.state_root))
    workdir = finished_run.workdir
    run_id = finished_run.manifest["run_id"]

    by_dir, by_id = va_cli("status", workdir), va_cli("status", run_id)
    assert by_dir.code == by_id.code == 0
    assert by_dir.out == by_id.out
    assert "succeeded" in by_dir.out and "encode    done" in by_dir.out

    table = va_cli("status")
    assert run_id in table.out and "succeeded" in table.out
    listed = json.loads(va_cli("status", "--json").out)
    assert [row["run_status"] for row in listed if row["run_id"] == run_id] == ["succeeded"]

    logs = va_cli("logs", run_id)
    assert "encode started" in logs.out and "run succeeded" in logs.out
    followed = va_cli("logs", workdir, "--follow", "--json")
    kinds = [json.loads(line)["kind"] for line in followed.out.splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"

    missing = va_cli("status", "run-nope")
    assert missing.code == ExitCode.INPUT_NOT_FOUND
    assert_one_line_error(missing.err, "run-nope")


def test_a_named_profile_is_used_on_its_own(files: Media) -> None:
    options = RunOptions(files.root / "w", profile="default")
    argv = graph_argv(files.root / "w", options, "job=/j.json")
    profile = argv[argv.index("--profile") + 1]
    assert Path(profile) == REPO / "profiles" / "default"
    assert argv[argv.index("--workflow-profile") + 1] == "none"
    assert "--cores" not in argv  # profiles/default sets cores: all
    with pytest.raises(VaError) as caught:
        graph_argv(files.root / "w", RunOptions(files.root / "w", profile="nope"), "job=/j.json")
    assert caught.value.code == ExitCode.INPUT_NOT_FOUND and "--profile" in caught.value.message
    bare = graph_argv(files.root / "w", RunOptions(files.root / "w", cores=3), "job=/j.json")
    assert "--profile" not in bare and bare[bare.index("--cores") + 1] == "3"


def test_a_missing_profile_is_named(files: Media, va_cli: CliRunner) -> None:
    missing = va_cli("run", files.job(), "--workdir", files.root / "x", "--profile", "nope")
    assert missing.code == ExitCode.INPUT_NOT_FOUND
    assert_one_line_error(missing.err, "--profile")
    # A profile of the user's own, which applies as written: test_produce_writes_the_job_and_fertig_mp4.


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ("cores: 0\n", "cores: 0"),  # Snakemake would wait forever
        ("jobs: -2\n", "jobs: -2"),  # Snakemake would fail at its start
        ("- cores\n", "not a mapping"),
        ("foo: 1\n", "unrecognized arguments: --foo=1"),  # refused by Snakemake itself
    ],
)
def test_a_profile_snakemake_cannot_use_is_named(
    files: Media, va_cli: CliRunner, settings: str, needle: str
) -> None:
    mine = files.root / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text(settings, encoding="utf-8")
    result = va_cli("run", files.job(), "--workdir", files.root / "w", "--profile", mine)
    assert result.code == ExitCode.VALIDATION_FAILED, result.err
    assert_one_line_error(result.err, "--profile", needle)
    assert not (files.root / "w" / "manifest.json").exists()


def test_a_bug_is_exit_70_with_one_line_and_a_traceback_only_with_debug(
    files: Media, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: object) -> ExitCode:
        raise KeyError("plan")  # what a bug in the package looks like from the CLI

    monkeypatch.setitem(cli.COMMANDS, "validate", broken)
    assert cli.main(["validate", str(files.job())]) == ExitCode.INTERNAL
    assert_one_line_error(capsys.readouterr().err, "internal error", "--debug")
    with pytest.raises(KeyError):
        cli.main(["--debug", "validate", str(files.job())])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_va_loads_is_one_line_and_130(signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM while the package loads (most of a second): ``va: interrupted`` and 130, not a
    traceback of the import under way (Ctrl-C) or a bare kill (SIGTERM). The signal is sent once
    va.startup is loaded, by the process itself, as it would arrive while the other modules load."""
    load = (
        "import os, signal, sys, time\n"
        "import va.startup\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "time.sleep(30)\n"
    )
    stopped = subprocess.run(
        [sys.executable, "-c", load],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a shell's foreground job
    )
    assert stopped.returncode == ExitCode.INTERRUPTED
    assert stopped.stderr == "va: interrupted\n"


def test_sigterm_before_the_graph_started_is_one_line_and_130(
    files: Media, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def checking_inputs(args: object) -> ExitCode:
        os.kill(os.getpid(), signal.SIGTERM)  # VIDAX cancelling a job, while va checks its inputs
        time.sleep(30)
        return ExitCode.OK

    def reached_the_caller(signum: int, frame: object) -> None:
        raise RuntimeError("SIGTERM was not va's to handle")  # without va's handler: exit 70, not 130

    monkeypatch.setitem(cli.COMMANDS, "validate", checking_inputs)
    before = signal.signal(signal.SIGTERM, reached_the_caller)
    try:
        assert cli.main(["validate", str(files.job())]) == ExitCode.INTERRUPTED
        assert signal.getsignal(signal.SIGTERM) == reached_the_caller  # given back after the command
    finally:
        signal.signal(signal.SIGTERM, before)
    assert_one_line_error(capsys.readouterr().err, "interrupted")


def test_debug_shows_the_traceback(files: Media, va_process: CliRunner) -> None:
    result = va_process("--debug", "validate", files.job(input={"audio": "nope.wav", "start": "start.png"}))
    assert result.code != 0
    assert "Traceback" in result.err and "nope.wav" in result.err


def test_logs_follow_waits_for_a_run_that_is_about_to_start(
    files: Media, va_cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = files.root / "w"
    workdir.mkdir()
    run = Workdir(workdir)
    waiting = threading.Event()
    real_wait = cli.wait_for_run

    def wait_and_tell(ref: str, seconds: float) -> None:
        waiting.set()
        real_wait(ref, seconds)

    monkeypatch.setattr(cli, "wait_for_run", wait_and_tell)
    results: list[Result] = []
    follower = threading.Thread(target=lambda: results.append(va_cli("logs", workdir, "--follow", "--json")))
    follower.start()
    assert waiting.wait(timeout=30)
    assert not run.events.exists()  # the follower waits in the empty workdir before the run begins
    job = load_job(files.job())
    record_run_started(run, job)
    record_run_finished(run)
    follower.join(timeout=60)
    assert not follower.is_alive() and results[0].code == 0, results
    kinds = [json.loads(line)["kind"] for line in results[0].out.splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('"buffer": {"pre_seconds": NaN}', "buffer.pre_seconds: nan is not a finite number"),
        ('"buffer": {"post_seconds": Infinity}', "buffer.post_seconds: inf is not a finite number"),
        ('"motion": {"prompt": "x", "guidance": -Infinity}', "motion.guidance: -inf is not a finite number"),
        ('"comfyui": {"params": {"x": ' + "[" * 200_000 + "]" * 200_000 + "}}", "nested too deeply"),
        ('"comfyui": {"params": {"x": ' + "[" * 40 + "]" * 40 + "}}", "nested deeper than 32 levels"),
        (
            '"output": {"basename": "x.mp4\\n"}',
            "output.basename: 'x.mp4\\n' is not a file name ending in .mp4",
        ),
        ('"output": {"basename": "a\\u0007.mp4"}', "no control characters"),
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "200k-nesting",
        "41-levels",
        "newline-basename",
        "bell-basename",
    ],
)
def test_values_no_setting_can_mean_are_refused(
    files: Media, va_cli: CliRunner, text: str, needle: str
) -> None:
    job = files.root / "job.json"
    head = '{"schema_version": 1, "input": {"audio": "voice.wav", "start": "start.png"}, '
    job.write_text(head + text + "}")
    result = va_cli("validate", job)
    assert result.code == ExitCode.VALIDATION_FAILED, result.err
    assert_one_line_error(result.err[:2000], needle)


def test_produce_refuses_a_nan_buffer(files: Media, va_cli: CliRunner) -> None:
    result = va_cli(
        "produce",
        "--audio",
        files.root / "voice.wav",
        "--start",
        files.root / "start.png",
        "--prompt",
        "x",
        "--pre",
        "nan",
        "--no-comfyui",
        "--workdir",
        files.root / "w",
    )
    assert result.code == ExitCode.VALIDATION_FAILED
    assert_one_line_error(result.err, "buffer.pre_seconds: nan is not a finite number")
    assert not (files.root / "w").exists()


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_an_unusable_workdir_is_named_with_its_reason(files: Media, va_cli: CliRunner, where: str) -> None:
    blocker = files.root / "taken"
    blocker.write_text("a user's file\n")
    workdir = blocker if where == "file" else blocker / "w"
    result = va_cli("run", files.job(), "--workdir", workdir)
    assert result.code == ExitCode.WORKDIR_UNUSABLE == 32
    reason = "it is a file, not a folder" if where == "file" else f"Not a directory: {workdir}"
    assert_one_line_error(result.err, f"workdir {workdir} unusable", reason)
    assert blocker.read_text() == "a user's file\n"


@pytest.mark.parametrize("fault", ["a-file", "full"])
def test_an_unusable_state_dir_is_named_with_its_reason(
    files: Media, va_cli: CliRunner, state_dir: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The run registers in the state dir: one that is a file, or on a full disk (fsync says ENOSPC, as a
    full disk does at the latest), is refused before Snakemake starts, with its code, path and reason."""
    if fault == "a-file":
        state_dir.parent.rmdir()
        state_dir.parent.write_text("not a folder\n")
        reason = f"{state_dir.parent} is a file, not a folder"
    else:
        fsync = os.fsync

        def full(fd: int) -> None:  # the state dir's disk is full, the workdir's is not
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(state_dir)):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            fsync(fd)

        monkeypatch.setattr(os, "fsync", full)
        reason = "No space left on device"
    result = va_cli("run", files.job(), "--workdir", files.root / "w")
    assert result.code == ExitCode.STATE_DIR_UNUSABLE == 34
    assert_one_line_error(result.err, f"state dir {state_dir} unusable", reason)
    assert not (files.root / "w" / "logs" / "events.jsonl").exists()  # no run was started


def test_status_with_a_file_for_a_state_dir_says_so(files: Media, va_cli: CliRunner, state_dir: Path) -> None:
    state_dir.parent.rmdir()
    state_dir.parent.write_text("not a folder\n")
    result = va_cli("status")
    assert result.code == ExitCode.STATE_DIR_UNUSABLE
    assert_one_line_error(result.err, f"state dir {state_dir} unusable", f"{state_dir.parent} is a file")


def test_a_run_stopped_before_it_registered_is_listed_with_its_workdir(
    files: Media, va_cli: CliRunner, state_dir: Path
) -> None:
    """A run whose start was recorded but which was stopped before it registered (VIDAX stopping it at
    once): its end registers it whole, and an entry an earlier va wrote without a workdir is listed."""
    run = Workdir(files.root / "w")
    job_path = files.job()
    run_id = record_run_started(run, load_job(job_path), registering={})  # not registered yet
    record_run_finished(run, VaError(ExitCode.INTERRUPTED, "run interrupted by a signal"))
    (entry,) = json.loads((state_dir / "runs.json").read_text())["runs"].values()
    assert entry["run_id"] == run_id and entry["workdir"] == str(run.root)
    assert entry["job"] == str(job_path)

    registry = json.loads((state_dir / "runs.json").read_text())
    registry["runs"]["run-partial"] = {"run_id": "run-partial", "run_status": "interrupted", "exit_code": 130}
    (state_dir / "runs.json").write_text(json.dumps(registry))
    listed = va_cli("status")
    assert listed.code == ExitCode.OK, listed.err
    rows = {line.split()[0]: line.split() for line in listed.out.splitlines()[1:]}
    assert rows[run_id][1] == "interrupted" and rows[run_id][-1] == str(run.root)
    assert rows["run-partial"][1] == "missing" and rows["run-partial"][-1] == "-"


def test_an_event_log_with_bytes_that_are_not_utf8_is_read(files: Media, va_cli: CliRunner) -> None:
    run = Workdir(files.root / "w")
    record_run_started(run, load_job(files.job()))
    with open(run.events, "ab") as handle:
        handle.write(b'{"message": "gr\xc3\n')  # a write cut inside a character
    logs = va_cli("logs", run.root)
    assert logs.code == ExitCode.OK, logs.err
    assert "started" in logs.out
    cleaned = va_cli("clean", run.root, "--dry-run")  # this process is alive: the run is running
    assert cleaned.code == ExitCode.RUN_NOT_FINISHED, cleaned.err


def test_a_corrupt_registry_is_exit_10_with_how_to_repair(state_dir: Path, va_cli: CliRunner) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "runs.json").write_text('{"runs": {"run-1": ')
    result = va_cli("status")
    assert result.code == ExitCode.VALIDATION_FAILED
    assert_one_line_error(result.err, "runs.json: not valid JSON", "move it away")


@pytest.mark.parametrize("document", [[], {"runs": []}, {"jobs": {}}])
def test_a_file_that_is_no_registry_is_exit_10_with_how_to_repair(
    state_dir: Path, va_cli: CliRunner, document: object
) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "runs.json").write_text(json.dumps(document))
    result = va_cli("status")
    assert result.code == ExitCode.VALIDATION_FAILED, result.err
    assert_one_line_error(result.err, "runs.json: not a va run registry; move it away")


def test_a_run_is_refused_before_it_writes_anything_when_the_registry_is_none(
    files: Media, va_cli: CliRunner, state_dir: Path
) -> None:
    """A registry file that is none is refused before the run's workdir is made, not by Snakemake's start
    (which left a workdir whose run had failed 70 and which a second va run refused, 30)."""
    state_dir.mkdir(parents=True)
    (state_dir / "runs.json").write_text('{"runs": [')
    workdir = files.root / "w"
    result = va_cli("run", files.job(), "--workdir", workdir, "-q")
    assert result.code == ExitCode.VALIDATION_FAILED, result.err
    assert_one_line_error(result.err, "runs.json: not valid JSON", "move it away")
    assert not workdir.exists()
    batch = files.root / "jobs"
    batch.mkdir()
    files.job(
        "jobs/a.json", input={"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png")}
    )
    result = va_cli("batch", batch, "--out", files.root / "out")
    assert result.code == ExitCode.VALIDATION_FAILED, result.err
    assert_one_line_error(result.err, "runs.json: not valid JSON", "move it away")
    assert not (files.root / "out").exists()


def test_a_registered_run_without_a_workdir_is_not_found_in_one_line(
    state_dir: Path, va_cli: CliRunner
) -> None:
    """Earlier versions registered a run stopped before its start was recorded without its workdir: the
    listing shows it missing, and asking for it by id says so in one line (it was an internal error)."""
    state_dir.mkdir(parents=True)
    entry = {"run_id": "run-1", "registered_at": "2026-01-01T00:00:00Z", "run_status": "interrupted"}
    (state_dir / "runs.json").write_text(json.dumps({"runs": {"run-1": entry}}))
    result = va_cli("status", "run-1")
    assert result.code == ExitCode.INPUT_NOT_FOUND, result.err
    assert_one_line_error(result.err, "no run found: run-1 is registered without a workdir")


WRONG_ENTRIES = [
    ({"x": 5}, "runs['x']: not an object"),
    ({"x": {"workdir": "/w"}}, "runs['x']: no run_id text"),
    ({"x": {"run_id": "x", "updated_at": None}}, "runs['x']: updated_at is not text"),
    ({"x": {"run_id": "x", "workdir": 7}}, "runs['x']: workdir is not text"),
    ({"x": {"run_id": "x", "exit_code": "bad"}}, "runs['x']: exit_code is not a whole number or null"),
]


@pytest.mark.parametrize(("runs", "wrong"), WRONG_ENTRIES)
def test_an_entry_of_the_wrong_shape_is_left_out_of_the_listing_in_one_line(
    state_dir: Path, va_cli: CliRunner, runs: dict[str, object], wrong: str
) -> None:
    """An entry va did not write so (no object, a field of the wrong type, which the listing indexes and
    formats): va status lists the others and names it in one warning line, never an internal error; the
    file is left as it is."""
    state_dir.mkdir(parents=True)
    good = {"run_id": "run-good", "registered_at": "2026-01-01T00:00:00Z", "workdir": "/gone"}
    text = json.dumps({"runs": {**runs, "run-good": good}})
    (state_dir / "runs.json").write_text(text)
    result = va_cli("status")
    assert result.code == ExitCode.OK, result.err
    assert_one_line_error(result.err, "va: warning: ", "runs.json: 1 entry(ies) not of the shape", wrong)
    assert [line.split()[:2] for line in result.out.splitlines()[1:]] == [["run-good", "missing"]]
    listed = va_cli("status", "--json")
    assert [row["run_id"] for row in json.loads(listed.out)] == ["run-good"]
    assert (state_dir / "runs.json").read_text() == text


@pytest.mark.whole_run
def test_a_run_registers_beside_an_entry_of_the_wrong_shape_and_keeps_it(
    files: Media, va_cli: CliRunner, state_dir: Path
) -> None:
    """One entry of the wrong shape does not stop a run (it failed every va run at Snakemake's start):
    the run registers, the entry is kept as it was, and va status lists the run and names the entry."""
    state_dir.mkdir(parents=True)
    bad = {"run_id": "x", "exit_code": "bad"}
    (state_dir / "runs.json").write_text(json.dumps({"runs": {"x": bad}}))
    workdir = files.root / "w"
    result = va_cli("run", files.job(), "--workdir", workdir, "-q")
    assert result.code == ExitCode.OK, result.err
    assert (workdir / "final.mp4").exists()
    runs = json.loads((state_dir / "runs.json").read_text())["runs"]
    assert runs.pop("x") == bad
    (entry,) = runs.values()
    assert entry["workdir"] == str(workdir) and entry["run_status"] == "succeeded"
    listed = va_cli("status")
    assert listed.code == ExitCode.OK, listed.err
    assert_one_line_error(listed.err, "runs['x']: exit_code is not a whole number or null")
    assert [line.split()[1] for line in listed.out.splitlines()[1:]] == ["succeeded"]


@pytest.mark.parametrize(("document", "name"), [("README.md", "{}"), ("docs/OUTPUT_CONTRACT.md", "`{}`")])
def test_the_exit_code_tables_name_every_exit_code(document: str, name: str) -> None:
    """The exit-code table of README.md and of docs/OUTPUT_CONTRACT.md: one row for each member of
    ExitCode, with its number, and no row for a code va does not have."""
    text = (REPO / document).read_text(encoding="utf-8")
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| " + name.format("([A-Z0-9_]+)") + r" \|", section, re.M)
    assert sorted((int(code), member) for code, member in rows) == sorted(
        (int(code), code.name) for code in ExitCode
    )


def test_a_closed_stdout_pipe_is_quiet(tmp_path: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # `va status | head -0`: the reader is gone before va writes
    done = subprocess.run([*VA, "status"], stdout=writer, stderr=subprocess.PIPE, text=True, check=False)
    os.close(writer)
    assert done.returncode == 0 and done.stderr == ""


def test_an_unknown_background_colour_is_a_validation_error(files: Media, va_cli: CliRunner) -> None:
    result = va_cli("validate", files.job(output={"background": "purplish"}))
    assert result.code == ExitCode.VALIDATION_FAILED
    assert_one_line_error(result.err, "output.background: 'purplish' is not a colour ffmpeg knows")
    assert va_cli("validate", files.job(output={"background": "darkslategray"})).code == 0
    assert va_cli("validate", files.job(output={"background": "#1e1e1e"})).code == 0


def test_a_wav_cut_short_of_its_header_is_exit_12_with_both_lengths(files: Media, va_cli: CliRunner) -> None:
    whole = files.tone("long.wav", 10.0, 16000)
    (files.root / "cut.wav").write_bytes(whole.read_bytes()[: 44 + 16000 * 2 * 11 // 10])  # 1.1 s of 10
    result = va_cli("validate", files.job(input={"audio": "cut.wav", "start": "start.png"}))
    assert result.code == ExitCode.UNSUPPORTED_FORMAT
    assert_one_line_error(
        result.err, "input.audio", "WAV header says 10.00 s but only 1.10 s decode", "cut.wav"
    )


def test_a_manifest_json_a_user_put_there_is_never_overwritten(files: Media, va_cli: CliRunner) -> None:
    workdir = files.root / "w"
    workdir.mkdir()
    (workdir / "manifest.json").write_text('{"mine": true}\n')
    result = va_cli("run", files.job(), "--workdir", workdir)
    assert result.code == ExitCode.OUTPUT_EXISTS
    assert_one_line_error(result.err, "is not a manifest of a va run", "not overwriting it")
    assert (workdir / "manifest.json").read_text() == '{"mine": true}\n'
    assert not (workdir / "logs" / "events.jsonl").exists()


def test_a_new_run_does_not_write_among_a_users_frames(files: Media, va_cli: CliRunner) -> None:
    """The job's own folder as the workdir, holding a frames/ of the user's with a still.png: a new run
    would write its frames/still.png there, and Snakemake could take a frames/still.mp4 found there for its
    own. Refused before anything is written in the folder."""
    folder = files.root / "shoot"
    (folder / "frames").mkdir(parents=True)
    (folder / "frames" / "still.png").write_bytes(b"the user's own picture")
    (folder / "captions.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nmine\n")
    before = sorted(path.relative_to(folder) for path in folder.rglob("*"))
    result = va_cli("run", files.job(), "--workdir", folder)
    assert result.code == ExitCode.OUTPUT_EXISTS, result.err
    assert_one_line_error(result.err, f"{folder} holds frames, captions.srt, which no va run made")
    assert sorted(path.relative_to(folder) for path in folder.rglob("*")) == before


def test_a_full_or_read_only_disk_anywhere_is_its_place_s_exit_code_in_one_line(
    tmp_path: Path, state_dir: Path
) -> None:
    """An OSError of a full disk, a read-only one or a path too long that reaches the CLI boundary names
    the file: 34 in the state dir, 32 elsewhere (the workdir), never an internal error."""
    in_state = OSError(errno.ENOSPC, "No space left on device", str(state_dir / "registry.json"))
    assert cli.disk_failure(in_state).code == ExitCode.STATE_DIR_UNUSABLE
    in_workdir = OSError(errno.ENAMETOOLONG, "File name too long", str(tmp_path / ("x" * 300)))
    failure = cli.disk_failure(in_workdir)
    assert failure.code == ExitCode.WORKDIR_UNUSABLE and failure.message.startswith("File name too long: ")


def test_default_workdirs_started_in_one_second_never_collide(tmp_path: Path) -> None:
    """Ten ``va produce`` without ``--workdir`` in one second: each gets a folder of its own, made."""
    with environment(None, tmp_path):
        folders = [default_workdir() for _ in range(10)]
    assert len(set(folders)) == 10
    assert all(folder.is_dir() and folder.parent == tmp_path / "workdir" for folder in folders)
