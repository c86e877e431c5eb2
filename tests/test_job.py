"""The job file: schema, defaults, relative paths, input checks."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from tests.conftest import CliRunner, Media, calls_of, unreadable
from va import media
from va.errors import ExitCode, VaError
from va.job import (
    CHECKED_AUDIO,
    CHECKED_VISUAL,
    AudioSettings,
    Buffer,
    ComfyParams,
    Loudness,
    check_inputs,
    load_job,
)
from va.plan import choose_seed
from va.timeline import Segment


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


MINIMAL = {"schema_version": 1, "input": {"audio": "voice.wav", "start": "start.png"}}


def test_defaults_are_filled_in_and_paths_resolved_against_the_job_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    job = load_job(write(tmp_path / "sub" / "job.json", MINIMAL))
    assert job.audio == tmp_path / "sub" / "voice.wav"
    assert job.data["determinism"] == {"fps": 25, "seed_policy": "random"}
    assert job.data["buffer"] == {"pre_seconds": 0, "post_seconds": 0}
    assert job.data["output"]["basename"] == "final.mp4"
    assert job.data["lipsync"]["enable"] is True
    assert job.data["comfyui"]["workflow_ids"] == []
    assert job.data["comfyui"]["params"] == {  # the schema's defaults, none in code
        "width": 1024,
        "height": 576,
        "steps": 20,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
    }
    assert job.data["comfyui"]["batch_size"] == 16 and job.data["comfyui"]["retries"] == 3


def test_the_sections_are_typed_values(tmp_path: Path) -> None:
    """What the modules read of a job: frozen dataclasses made once from the validated document, numbers
    of the schema's type, arrays as tuples, a field the job leaves out None."""
    document = {
        **MINIMAL,
        "buffer": {"pre_seconds": 1},
        "comfyui": {"workflow_ids": ["w"], "params": {"cfg": 5}},
    }
    job = load_job(write(tmp_path / "job.json", document))
    assert job.buffer == Buffer(pre_seconds=1.0, post_seconds=0.0) and isinstance(
        job.buffer.pre_seconds, float
    )
    assert job.comfyui.workflow_ids == ("w",) and job.comfyui.url is None and job.comfyui.batch_size == 16
    assert job.comfyui.params == ComfyParams(
        width=1024,
        height=576,
        steps=20,
        sampler="dpmpp_2m",
        scheduler="karras",
        prompt=None,
        negative=None,
        negative_prompt=None,
        cfg=5.0,
        ckpt_name=None,
        fps=None,
        denoise=None,
    )
    assert (job.output.width, job.output.fit, job.output.crf) == (None, "contain", 18)
    assert (job.determinism.fps, job.determinism.seed_policy, job.determinism.seed) == (25, "random", None)
    assert job.lipsync.provider is None and job.stabilize.method == "both"
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.output.crf = 1  # type: ignore[misc]


def test_the_audio_section_the_timeline_and_a_pool_are_typed_too(tmp_path: Path) -> None:
    """Every section is a typed value: the voice's loudness target, the inline timeline's segments, the
    timeline file as a path, a pool of servers as a tuple."""
    plain = load_job(write(tmp_path / "plain.json", MINIMAL))
    assert (
        plain.voice == AudioSettings(loudness=None) and plain.timeline is None and plain.timeline_file is None
    )
    document = {
        **MINIMAL,
        "audio": {"loudness": {"target_lufs": -20}},
        "timeline": [{"start": 0, "end": 2, "prompt": "a", "strength": 1}],
        "comfyui": {"url": ["http://a:8188", {"url": "http://b:8188", "slots": 2}]},
    }
    job = load_job(write(tmp_path / "job.json", document))
    assert job.voice.loudness == Loudness(target_lufs=-20.0, true_peak_db=-1.5)
    assert job.timeline == (Segment(start=0.0, end=2.0, prompt="a", strength=1.0),)
    assert isinstance(job.timeline[0].strength, float)
    assert job.comfyui.url == ("http://a:8188", {"url": "http://b:8188", "slots": 2})
    listed = load_job(write(tmp_path / "sub.json", {**MINIMAL, "timeline_file": "cues/voice.srt"}))
    assert listed.timeline_file == tmp_path / "cues" / "voice.srt"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({**MINIMAL, "colour": "red"}, "unknown key 'colour'"),
        ({**MINIMAL, "motion": {"promt": "x"}}, "motion: unknown key 'promt'"),
        ({**MINIMAL, "determinism": {"seed_policy": "fixed"}}, "determinism: 'seed' is a required property"),
        ({**MINIMAL, "determinism": {"fps": 0}}, "determinism.fps"),
        ({**MINIMAL, "buffer": {"pre_seconds": -1}}, "buffer.pre_seconds"),
        ({**MINIMAL, "output": {"width": 641, "height": 480}}, "output.width: 641 is not a multiple of 2"),
        ({**MINIMAL, "output": {"basename": "../x.mp4"}}, "output.basename"),
        ({**MINIMAL, "schema_version": 2}, "schema_version"),
        ({"schema_version": 1, "input": {"audio": "a.wav"}}, "input: 'start' is a required property"),
    ],
)
def test_schema_violations_name_the_field(tmp_path: Path, document: dict[str, object], expected: str) -> None:
    with pytest.raises(VaError) as caught:
        load_job(write(tmp_path / "job.json", document))
    assert caught.value.code == ExitCode.VALIDATION_FAILED
    assert expected in caught.value.message
    assert "job.json" in caught.value.message


def test_not_json_is_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(VaError) as caught:
        load_job(path)
    assert caught.value.code == ExitCode.VALIDATION_FAILED


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(VaError) as caught:
        load_job(tmp_path / "nope.json")
    assert caught.value.code == ExitCode.INPUT_NOT_FOUND


def test_unsupported_start_type_is_named(tmp_path: Path) -> None:
    (tmp_path / "voice.wav").write_bytes(b"x")
    (tmp_path / "start.txt").write_text("hello", encoding="utf-8")
    job = load_job(
        write(tmp_path / "job.json", {**MINIMAL, "input": {"audio": "voice.wav", "start": "start.txt"}})
    )
    with pytest.raises(VaError) as caught:
        check_inputs(job)
    assert caught.value.code == ExitCode.UNSUPPORTED_FORMAT
    assert "input.start" in caught.value.message


@pytest.mark.parametrize(
    ("determinism", "fixed_seed"),
    [
        ({"seed_policy": "fixed", "seed": 1234}, 1234),
        ({"seed_policy": "per_retry", "seed": 99}, 99),
        ({"seed_policy": "per_retry"}, None),
        ({"seed_policy": "random", "seed": 5}, None),
    ],
)
def test_the_seed_policy_decides_the_run_seed(
    tmp_path: Path, determinism: dict[str, object], fixed_seed: int | None
) -> None:
    job = load_job(write(tmp_path / "job.json", {**MINIMAL, "determinism": determinism}))
    seeds = {choose_seed(job) for _ in range(3)}
    if fixed_seed is None:
        assert len(seeds) == 3 and all(0 <= seed < 2**53 for seed in seeds)  # drawn anew each time
    else:
        assert seeds == {fixed_seed}


def test_a_start_image_above_the_limit_is_refused_from_its_header(files: Media, va_cli: CliRunner) -> None:
    """A 9999x9999 PNG (its header; the pixels would take 16 GB to decode) is refused by va validate with
    exit 12, naming the size and the schema's limit, without decoding it."""
    rows = zlib.compress(b"\x00" * (1 + 9999 * 3))
    (files.root / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 9999, 9999, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )
    result = va_cli("validate", files.job(input={"audio": "voice.wav", "start": "huge.png"}))
    assert result.code == ExitCode.UNSUPPORTED_FORMAT
    assert result.err.count("\n") == 1
    assert "input.start: 9999x9999 is above the limit of 8192 px" in result.err


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_an_unreadable_input_is_named_permission_denied(files: Media) -> None:
    """A file the user may not read is said to be that, not "not a decodable audio file"."""
    job = load_job(files.job())
    with pytest.raises(VaError) as caught, unreadable(job.audio):
        check_inputs(job)
    assert caught.value.code == ExitCode.INPUT_NOT_FOUND
    assert caught.value.message == f"input.audio: permission denied: cannot read {job.audio}"


def test_each_input_is_probed_once_while_it_is_the_same_file(
    files: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks keep their results by the file's identity (path, size, mtime, ctime, inode): a second
    check of the same files probes nothing, a touched or rewritten file is probed anew."""
    CHECKED_AUDIO.clear()
    CHECKED_VISUAL.clear()
    audio, visual = calls_of(monkeypatch, media, "probe_audio"), calls_of(monkeypatch, media, "probe_visual")
    job = load_job(files.job())
    check_inputs(job)
    check_inputs(job)
    assert (len(audio), len(visual)) == (1, 1)
    os.utime(job.audio, ns=(0, job.audio.stat().st_mtime_ns + 1_000_000))  # touched
    check_inputs(job)
    assert (len(audio), len(visual)) == (2, 1)
    # Rewritten in place with the start of a longer voice, of the same size, its mtime put back (a copy
    # that keeps times): its ctime tells, and the check sees a WAV whose header promises more.
    before = job.audio.stat()
    longer = files.tone("longer.wav", 3.0)
    with open(job.audio, "r+b") as handle:
        handle.write(longer.read_bytes()[: before.st_size])
    os.utime(job.audio, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (job.audio.stat().st_size, job.audio.stat().st_ino) == (before.st_size, before.st_ino)
    with pytest.raises(VaError, match=r"^input\.audio: truncated audio: its WAV header says 3\.00 s"):
        check_inputs(job)
    assert len(audio) == 3


def test_a_failed_check_is_made_again(files: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a check that passed is kept: one that failed fails again with its own message."""
    (files.root / "noise.wav").write_text("not audio")
    job = load_job(files.job(input={"audio": "noise.wav", "start": "start.png"}))
    probed = calls_of(monkeypatch, media, "probe_audio")
    for attempt in (1, 2):
        with pytest.raises(VaError, match=r"^input\.audio: not a decodable audio file") as failed:
            check_inputs(job)
        assert failed.value.code == ExitCode.UNSUPPORTED_FORMAT and len(probed) == attempt
