"""va/lipsync/remote.py in-process against the HTTP service double: submit, poll, download; the failures
a service can give; a download cut off halfway retried and landing whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.lipsync.conftest import UseProviders
from tests.lipsync.fakes import http_provider
from tests.lipsync.lipsync_service import Service
from va import media
from va.errors import ExitCode, VaError
from va.lipsync.command import ProviderRun
from va.lipsync.remote import run_http_provider


@pytest.fixture
def call(tmp_path: Path, clip: dict[str, Path]) -> tuple[ProviderRun, dict[str, Path]]:
    """A provider call laid out as the stage lays it out, with the clip as its video, image and audio."""
    work = tmp_path / "lipsync" / "work"
    work.mkdir(parents=True)
    inputs = {"video": clip["video"], "image": clip["video"], "audio": clip["audio"]}
    values = {"fps": "25", "seed": "7", "workdir": str(work)}
    return ProviderRun(values, work, tmp_path / "lipsync" / "logs"), inputs


def test_http_provider_end_to_end(
    service: Service, use_providers: UseProviders, call: tuple[ProviderRun, dict[str, Path]]
) -> None:
    run, inputs = call
    provider = use_providers(remote=http_provider(service.url))["remote"]
    result = run_http_provider(provider, run, inputs)
    assert result == run.workdir / "result.mp4"
    assert media.decoded_duration(result, stream="v") == pytest.approx(2.0, abs=0.04)
    assert service.submits == 1 and service.downloads == 1
    (job,) = service.jobs
    assert service.jobs[job]["fields"] == {"fps": "25", "seed": "7"}
    for name, path in inputs.items():  # what the service received is what the stage prepared
        assert (service.root / job / name).read_bytes() == path.read_bytes()
    assert int(str(service.jobs[job]["polls"])) == 2  # "running" once, then "succeeded"


@pytest.mark.parametrize(
    ("fault", "settings", "code", "needle", "submits"),
    [
        ("500", {}, ExitCode.LIPSYNC_UNAVAILABLE, "submit failed after 2 attempt(s): HTTP 500", 2),
        ("failed", {}, ExitCode.LIPSYNC_FAILED, "failed: model crashed", 1),
        ("stuck", {"timeout_seconds": 1}, ExitCode.LIPSYNC_TIMEOUT, "did not finish within 1 s", 1),
    ],
    ids=["submit-500", "job-failed", "never-finishes"],
)
def test_http_provider_failures(
    service: Service,
    use_providers: UseProviders,
    call: tuple[ProviderRun, dict[str, Path]],
    fault: str,
    settings: dict[str, Any],
    code: ExitCode,
    needle: str,
    submits: int,
) -> None:
    run, inputs = call
    service.fault = fault
    provider = use_providers(remote=http_provider(service.url, retries=1, **settings))["remote"]
    with pytest.raises(VaError) as raised:
        run_http_provider(provider, run, inputs)
    assert raised.value.code == code
    assert raised.value.message.startswith("lip-sync provider remote") and needle in raised.value.message
    assert service.submits == submits and service.downloads == 0
    assert list(run.workdir.iterdir()) == []


def test_http_download_cut_off_is_retried_and_lands_whole(
    service: Service, use_providers: UseProviders, call: tuple[ProviderRun, dict[str, Path]]
) -> None:
    run, inputs = call
    service.fault = "cut"
    provider = use_providers(remote=http_provider(service.url, retries=1))["remote"]
    result = run_http_provider(provider, run, inputs)
    assert service.downloads == 2
    (job,) = service.jobs
    assert result == run.workdir / "result.mp4"
    assert result.read_bytes() == (service.root / job / "result.mp4").read_bytes()
    assert not [p for p in run.workdir.iterdir() if p.name.endswith(".part")]


def test_a_cut_off_download_with_no_retry_left_leaves_no_file(
    service: Service, use_providers: UseProviders, call: tuple[ProviderRun, dict[str, Path]]
) -> None:
    run, inputs = call
    service.fault = "cut"  # only the first download is cut: with no retry, that one is the last
    provider = use_providers(remote=http_provider(service.url, retries=0))["remote"]
    with pytest.raises(VaError) as raised:
        run_http_provider(provider, run, inputs)
    assert raised.value.code == ExitCode.LIPSYNC_UNAVAILABLE
    assert "download failed after 1 attempt(s)" in raised.value.message
    assert list(run.workdir.iterdir()) == []


def test_a_submit_whose_answer_is_lost_is_not_sent_again(
    service: Service, use_providers: UseProviders, call: tuple[ProviderRun, dict[str, Path]]
) -> None:
    """The service took the job but its answer never came: a second POST would start it twice."""
    run, inputs = call
    service.fault = "no_answer"
    provider = use_providers(remote=http_provider(service.url, retries=3))["remote"]
    with pytest.raises(VaError) as raised:
        run_http_provider(provider, run, inputs)
    assert raised.value.code == ExitCode.LIPSYNC_UNAVAILABLE
    assert "after the request was sent; not sent again" in raised.value.message
    assert service.submits == 1 and len(service.jobs) == 1


def test_a_submit_to_a_closed_port_is_retried(
    use_providers: UseProviders, call: tuple[ProviderRun, dict[str, Path]]
) -> None:
    """Nothing listens: the request never arrived anywhere, so it is sent again, up to the retries."""
    run, inputs = call
    provider = use_providers(remote=http_provider(f"http://127.0.0.1:{free_port()}", retries=1))["remote"]
    with pytest.raises(VaError) as raised:
        run_http_provider(provider, run, inputs)
    assert raised.value.code == ExitCode.LIPSYNC_UNAVAILABLE
    assert "submit failed after 2 attempt(s): ConnectionError" in raised.value.message
