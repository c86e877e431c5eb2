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
    job = build_job(request(cleanup="intermediates"))
    assert job["cleanup"] == {"after_success": "intermediates"}


def test_a_bad_feature_flag_names_the_field() -> None:
    with pytest.raises(VaError) as refused:
        build_job(request(cleanup="everything"))
    assert refused.value.code == ExitCode.VALIDATION_FAILED
    assert "cleanup.after_success" in refused.value.message
