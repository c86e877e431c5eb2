"""A synthetic talking face for the sync check's tests: the photograph tests/data/face.jpg, its mouth warped
open frame by frame in proportion to a voice's loudness envelope, and that voice, made here with numpy.

The picture is the photo's face cropped and scaled to 360x360 px; its lower lip and jaw move down by up to
``OPEN_PIXELS`` (the gap painted as the inside of a mouth), so a face detector and landmark model see a
real face whose mouth opens and closes. The voice is a buzz at 120 Hz with its harmonics, whose loudness
follows the same envelope: syllables of 3 to 8 frames, some loud, some soft, and optional long pauses.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import cv2
import numpy

from tests.conftest import FACE_PHOTO
from va import media

FPS = 25
SIZE = 360
SAMPLE_RATE = 16000
#: Where the photo's lips meet and how wide its mouth is, in the 360 px picture (dlib's landmarks of the
#: still, measured once: inner lips at y 180 and 188, corners at x 150 and 207).
MOUTH_X, MOUTH_Y, MOUTH_HALF_WIDTH = 178, 184, 28
CHIN_Y = 223
OPEN_PIXELS = 18


def base_picture() -> numpy.ndarray:
    """The face of the photograph, 360x360 px, BGR."""
    photo = cv2.imread(str(FACE_PHOTO))
    return cv2.resize(photo[0:144, 40:184], (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def envelope(seconds: float, *, seed: int, pauses: tuple[tuple[float, float], ...] = ()) -> numpy.ndarray:
    """A speech-like loudness envelope, a value in [0, 1] a frame: syllables (raised-cosine bumps of 3 to
    8 frames, heights 0.3 to 1) with gaps of 1 to 6 frames, and silence in each ``pauses`` (seconds)."""
    rng = numpy.random.default_rng(seed)
    frames = round(seconds * FPS)
    values = numpy.zeros(frames)
    at = 2
    while at < frames:
        length = int(rng.integers(3, 9))
        bump = numpy.sin(numpy.linspace(0, numpy.pi, length + 2)[1:-1]) * rng.uniform(0.3, 1.0)
        values[at : at + length] = bump[: max(0, frames - at)]
        at += length + int(rng.integers(1, 7))
    for start, end in pauses:
        values[round(start * FPS) : round(end * FPS)] = 0.0
    return values


def write_voice(path: Path, levels: numpy.ndarray) -> Path:
    """A voice whose loudness follows ``levels`` (one a frame, linear, smoothly interpolated): 16 kHz mono."""
    samples_per_frame = SAMPLE_RATE // FPS
    count = len(levels) * samples_per_frame
    at = (numpy.arange(count) + 0.5) / samples_per_frame - 0.5
    gain = numpy.interp(at, numpy.arange(len(levels)), levels)
    t = numpy.arange(count) / SAMPLE_RATE
    buzz = sum(numpy.sin(2 * numpy.pi * 120 * k * t) / k for k in range(1, 8))
    rng = numpy.random.default_rng(1)
    signal = gain * (0.5 * buzz / 2.6 + 0.05 * rng.standard_normal(count))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((numpy.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def open_mouth(picture: numpy.ndarray, opening: float) -> numpy.ndarray:
    """``picture`` with the lower lip and jaw moved down by ``opening`` x ``OPEN_PIXELS`` at the mouth's
    middle (less towards its corners, fading out below the chin), the gap dark as an open mouth."""
    height, width = picture.shape[:2]
    ys, xs = numpy.mgrid[0:height, 0:width].astype(numpy.float32)
    across = numpy.exp(-(((xs - MOUTH_X) / MOUTH_HALF_WIDTH) ** 2) * 1.5)
    below = numpy.clip(1.0 - (ys - CHIN_Y) / 60.0, 0.0, 1.0) * (ys > MOUTH_Y)
    shift = opening * OPEN_PIXELS * across * below
    moved = cv2.remap(picture, xs, ys - shift, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gap = (ys > MOUTH_Y) & (ys < MOUTH_Y + shift)
    moved[gap] = (35, 25, 45)
    return moved


def write_talking_face(path: Path, openings: numpy.ndarray) -> Path:
    """A 25 fps H.264 video of the face, its mouth opened by ``openings`` (one a frame, in [0, 1]), at
    libx264's defaults, as a lip-sync tool's output: with B-frames, most of which no other frame refers
    to (the sync check does not decode those)."""
    picture = base_picture()
    argv = [
        media.executable("ffmpeg"),
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
    ]
    argv += [
        "-s",
        f"{SIZE}x{SIZE}",
        "-r",
        str(FPS),
        "-i",
        "pipe:0",
        "-c:v",
        "libx264",
    ]
    argv += ["-pix_fmt", "yuv420p", str(path)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE) as process:
        assert process.stdin is not None
        for opening in openings:
            process.stdin.write(open_mouth(picture, float(opening)).tobytes())
        process.stdin.close()
    assert process.returncode == 0
    return path


def shifted(levels: numpy.ndarray, frames: int) -> numpy.ndarray:
    """``levels`` ``frames`` later (positive) or earlier, the frames moved in from outside closed (0)."""
    moved = numpy.roll(levels, frames)
    if frames > 0:
        moved[:frames] = 0.0
    elif frames < 0:
        moved[frames:] = 0.0
    return moved
