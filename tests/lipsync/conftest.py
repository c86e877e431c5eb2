"""Fixtures of the lip-sync tests: providers selected per test, a 2 s clip, the HTTP service double."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Media
from tests.lipsync.fakes import providers_file
from tests.lipsync.lipsync_service import Service, lipsync_service
from tests.prepared import hold_start_frame_once, prepare_audio_once
from va.job import Job
from va.lipsync.providers import Provider, get_provider
from va.plan import plan_job, write_plan
from va.rule_settings import audio_settings, still_settings
from va.workdir import Workdir

UseProviders = Callable[..., dict[str, Provider]]


def prepare_lipsync_inputs(job: Job, root: Path) -> Workdir:
    """What the graph makes before the lip-sync rule, in the workdir ``root``: the plan written, the padded
    audio (prepare_audio) and the held still (hold_start_frame), each made once per test process for the
    same inputs and settings (tests/prepared.py)."""
    run = Workdir(root)
    for folder in ("prepare", "frames"):
        (run.root / folder).mkdir(parents=True)
    plan = plan_job(job)
    write_plan(plan, run.plan)
    prepare_audio_once(audio_settings(plan), run.padded_audio, run.padded_aac)
    hold_start_frame_once(still_settings(plan), run.still, run.still_loop)
    return run


@pytest.fixture
def use_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> UseProviders:
    """``use_providers(id=settings, ...)`` writes a providers.json in this test's folder, points
    VIDAX_LIPSYNC_CONFIG at it and returns the loaded (validated, defaults filled in) providers."""

    def use(**providers: dict[str, Any]) -> dict[str, Provider]:
        for name, value in providers_file(tmp_path, **providers).items():
            monkeypatch.setenv(name, value)
        return {pid: get_provider(pid) for pid in providers}

    return use


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2 s, 25 fps 320x240 video and a 2 s 16 kHz tone, made once per worker. Read them, never change
    them: a test that needs them elsewhere copies them."""
    media = Media(tmp_path_factory.mktemp("clip"))
    return {"video": media.video("video.mp4", seconds=2.0), "audio": media.tone("audio.wav")}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """The HTTP lip-sync double, this test's own (a thread on a free loopback port: it starts in
    milliseconds, so no sharing and no state carried between tests)."""
    root = tmp_path / "service"
    root.mkdir()
    with lipsync_service(root) as running:
        yield running
