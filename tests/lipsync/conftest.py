"""Fixtures of the lip-sync tests: providers selected per test, a 2 s clip, the HTTP service double."""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Media
from tests.lipsync.fakes import providers_file
from tests.lipsync.lipsync_service import Service, lipsync_service
from va import stages
from va.job import Job
from va.lipsync.providers import Provider, get_provider
from va.plan import plan_job, write_plan
from va.plan_parts import InputFile
from va.rule_settings import AudioSettings, StillSettings, audio_settings, still_settings
from va.workdir import Workdir

UseProviders = Callable[..., dict[str, Provider]]


#: What prepare_audio and hold_start_frame made for a set of settings, once per test process (each xdist
#: worker): most lip-sync tests prepare the same 2 s tone and 320x240 still, and the two rules' ffmpeg and
#: ffprobe processes cost as much CPU as the rest of such a test. Keyed by the settings with the inputs
#: named by their content only (each test has its own copy of the same file).
_PREPARED: dict[str, tuple[Path, ...]] = {}
_PREPARED_DIR = Path(tempfile.mkdtemp(prefix="va-test-prepared-"))
atexit.register(shutil.rmtree, _PREPARED_DIR, True)


def _prepared_key(audio: AudioSettings, still: StillSettings) -> str:
    """The two rules' settings, their inputs by SHA-256 alone."""
    by_content = (
        dataclasses.replace(audio, voice=InputFile("", audio.voice.sha256)),
        dataclasses.replace(still, start=InputFile("", still.start.sha256)),
    )
    return repr(by_content)


def prepare_lipsync_inputs(job: Job, root: Path) -> Workdir:
    """What the graph makes before the lip-sync rule, in the workdir ``root``: the plan written, the padded
    audio (prepare_audio) and the held still (hold_start_frame); both rules run once per test process
    for the same settings and inputs, their outputs copied after."""
    run = Workdir(root)
    for folder in ("prepare", "frames"):
        (run.root / folder).mkdir(parents=True)
    plan = plan_job(job)
    write_plan(plan, run.plan)
    audio, still = audio_settings(plan), still_settings(plan)
    outputs = (run.padded_audio, run.padded_aac, run.still, run.still_loop)
    key = _prepared_key(audio, still)
    if key not in _PREPARED:
        stages.prepare_audio(audio, run.padded_audio, run.padded_aac)
        stages.hold_start_frame(still, run.still, run.still_loop)
        kept = _PREPARED_DIR / str(len(_PREPARED))
        kept.mkdir()
        _PREPARED[key] = tuple(Path(shutil.copyfile(path, kept / path.name)) for path in outputs)
        return run
    for made, path in zip(_PREPARED[key], outputs, strict=True):
        shutil.copyfile(made, path)
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
