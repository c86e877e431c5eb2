"""Shared fixtures: tiny media made on the fly with ffmpeg, an isolated state dir, the CLI as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
VA = [sys.executable, "-m", "va"]


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; a failure fails the test with ffmpeg's message."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def ffprobe_streams(path: Path) -> dict[str, dict[str, Any]]:
    """The first video and audio stream of a file, with counted frames."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-print_format", "json", "-show_streams", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    streams = json.loads(out)["streams"]
    return {kind: next(s for s in streams if s["codec_type"] == kind) for kind in ("video", "audio")}


@dataclass
class Media:
    """Makes small media files in one folder."""

    root: Path

    def tone(self, name: str = "voice.wav", seconds: float = 2.0, rate: int = 16000, *extra: str) -> Path:
        path = self.root / name
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=220:sample_rate={rate}:duration={seconds}",
            *extra,
            str(path),
        )
        return path

    def image(self, name: str = "start.png", size: str = "320x240", pix_fmt: str = "rgb24") -> Path:
        path = self.root / name
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=1",
            "-frames:v",
            "1",
            "-pix_fmt",
            pix_fmt,
            str(path),
        )
        return path

    def video(self, name: str = "start.mp4", size: str = "320x240", seconds: float = 1.0) -> Path:
        path = self.root / name
        codec = ["-c:v", "libvpx-vp9"] if path.suffix == ".webm" else ["-c:v", "libx264"]
        ffmpeg(
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
            *codec, "-pix_fmt", "yuv420p", str(path),
        )  # fmt: skip
        return path

    def job(self, name: str = "job.json", **sections: Any) -> Path:
        document: dict[str, Any] = {
            "schema_version": 1,
            "input": {"audio": "voice.wav", "start": "start.png"},
            "determinism": {"fps": 25, "seed_policy": "fixed", "seed": 7},
            "lipsync": {"enable": False},
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(document.get(key), dict):
                document[key] = {**document[key], **value}
            else:
                document[key] = value
        path = self.root / name
        path.write_text(json.dumps(document), encoding="utf-8")
        return path


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own VA_STATE_DIR, so nothing touches the user's ~/.va."""
    root = tmp_path_factory.mktemp("va-state")
    monkeypatch.setenv("VA_STATE_DIR", str(root))
    return root / "state"


@pytest.fixture
def files(tmp_path: Path) -> Media:
    """A media factory in a fresh folder, with a 2 s tone and a 320x240 image already made."""
    factory = Media(tmp_path)
    factory.tone()
    factory.image()
    return factory


@dataclass
class Result:
    """What a CLI call did."""

    code: int
    out: str
    err: str


CliRunner = Callable[..., Result]


@pytest.fixture
def va_cli() -> CliRunner:
    """Run ``python -m va`` as a subprocess, as a user would."""

    def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        done = subprocess.run(
            [*VA, *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            timeout=300,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run
