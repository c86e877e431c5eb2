"""``va produce``'s flags of the planned features (cleanup, motion, stabilize) in the job it writes,
and the same fields of VIDAX's ``POST /produce``."""

from __future__ import annotations

from pathlib import Path

import pytest

from va.errors import ExitCode, VaError
from va.produce import ProduceRequest, build_job


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
