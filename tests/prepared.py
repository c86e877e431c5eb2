"""The bodies of prepare_audio and hold_start_frame for in-process tests, each run once per test process (each
xdist worker) for the same settings and input contents, its outputs copied after: most tests of the later
stages prepare the same 2 s tone and the same still, and these rules' ffmpeg and ffprobe processes (about
0.1 s of CPU each) cost as much as the rest of such a test. The first call runs the real rule body."""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from va import stages
from va.plan_parts import InputFile
from va.rule_settings import AudioSettings, StillSettings

_MADE: dict[str, tuple[Path, ...]] = {}
_MADE_DIR = Path(tempfile.mkdtemp(prefix="va-test-prepared-"))
atexit.register(shutil.rmtree, _MADE_DIR, True)


def _once(key: str, outputs: tuple[Path, ...], make: Callable[[], None]) -> None:
    """``outputs`` as ``make`` writes them: made the first time ``key`` is asked for, copied after."""
    if key in _MADE:
        for made, path in zip(_MADE[key], outputs, strict=True):
            shutil.copyfile(made, path)
        return
    make()
    kept = _MADE_DIR / str(len(_MADE))
    kept.mkdir()
    _MADE[key] = tuple(Path(shutil.copyfile(path, kept / path.name)) for path in outputs)


def prepare_audio_once(settings: AudioSettings, padded: Path, aac: Path) -> None:
    """``stages.prepare_audio(settings, padded, aac)`` (no loudness record), once per voice and settings."""
    by_content = dataclasses.replace(settings, voice=InputFile("", settings.voice.sha256))
    _once(f"audio {by_content!r}", (padded, aac), lambda: stages.prepare_audio(settings, padded, aac))


def hold_start_frame_once(settings: StillSettings, still: Path, loop: Path) -> None:
    """``stages.hold_start_frame(settings, still, loop)``, once per start image and settings."""
    by_content = dataclasses.replace(settings, start=InputFile("", settings.start.sha256))
    _once(f"still {by_content!r}", (still, loop), lambda: stages.hold_start_frame(settings, still, loop))
