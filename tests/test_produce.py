"""``va produce``'s flags of the planned features (cleanup, motion, stabilize) in the job it writes,
and the same fields of VIDAX's ``POST /produce``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from va.cli import build_parser, produce_request
from va.errors import ExitCode, VaError
from va.produce import ProduceRequest, build_job
from va.vidax.routes.jobs import ProduceBody


def request(**flags: object) -> ProduceRequest:
    return ProduceRequest(audio=Path("voice.wav"), start=Path("start.png"), prompt="p", **flags)  # type: ignore[arg-type]


def test_feature_flags_land_in_the_job() -> None:
    plain = build_job(request())
    assert plain["cleanup"] == {"after_success": "keep"}  # the schema's default, not the flag's
    assert plain["motion"]["strength"] == 0 and plain["motion"]["camera"] == "push_in"
    assert plain["stabilize"] == {"enable": False, "method": "both"}
    job = build_job(
        request(cleanup="intermediates", motion_strength=0.4, camera="pan_left", stabilize="deflicker")
    )
    assert job["stabilize"] == {"enable": True, "method": "deflicker"}
    timed = build_job(request(timeline_file=Path("cues.srt"), captions="burn"))
    assert (
        timed["timeline_file"] == str(Path("cues.srt").absolute()) and timed["output"]["captions"] == "burn"
    )
    assert job["cleanup"] == {"after_success": "intermediates"}
    assert job["motion"]["strength"] == 0.4 and job["motion"]["camera"] == "pan_left"


def test_loudness_is_off_unless_asked_and_the_flag_sets_the_target() -> None:
    assert build_job(request())["audio"] == {}
    loud = build_job(request(loudness=-18.0))
    assert loud["audio"] == {"loudness": {"target_lufs": -18.0, "true_peak_db": -1.5}}


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"cleanup": "everything"}, "cleanup.after_success"),
        ({"motion_strength": 1.5}, "motion.strength"),
        ({"camera": "dolly"}, "motion.camera"),
        ({"stabilize": "blur"}, "stabilize.method"),
        ({"loudness": 3.0}, "audio.loudness.target_lufs"),
    ],
)
def test_a_bad_feature_flag_names_the_field(flags: dict[str, object], field: str) -> None:
    with pytest.raises(VaError) as refused:
        build_job(request(**flags))
    assert refused.value.code == ExitCode.VALIDATION_FAILED
    assert field in refused.value.message


def test_a_flag_and_a_vidax_body_field_are_one_field() -> None:
    """The flags are made from the request's fields (the documented ``--timeline`` kept beside
    ``--timeline-file``); ``POST /produce`` takes the same fields, under the same names, and no other."""
    flags = [
        "--audio",
        "voice.wav",
        "--start",
        "start.png",
        "--prompt",
        "p",
        "--neg",
        "blurry",
        "--pre",
        "0.5",
    ]
    flags += ["--timeline", "cues.srt", "--lipsync", "on", "--lipsync_provider", "tool", "--no-comfyui"]
    request = produce_request(build_parser().parse_args(["produce", *flags, "--motion-strength", "0.3"]))
    assert request == ProduceRequest(
        audio="voice.wav",
        start="start.png",
        prompt="p",
        neg="blurry",
        pre=0.5,
        lipsync="on",
        lipsync_provider="tool",
        no_comfyui=True,
        motion_strength=0.3,
        timeline_file="cues.srt",
    )
    body = TypeAdapter(ProduceBody).validate_python({**dataclasses.asdict(request), "webhook_url": None})
    assert body.timeline_file == "cues.srt" and build_job(body) == build_job(request)
    for drifted in ("negative", "pre_seconds", "timeline", "comfyui"):
        with pytest.raises(ValidationError, match=drifted):
            TypeAdapter(ProduceBody).validate_python({"audio": "a", "start": "s", "prompt": "p", drifted: 1})
