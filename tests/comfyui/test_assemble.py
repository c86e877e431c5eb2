"""va/comfyui/assemble.py: the join of a generation by segments, its head frames dropped and, when the job
asks for it, a crossfade at each seam, the frame count exact (checked on the frames ffmpeg decodes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from va.comfyui.assemble import assemble_segments, seam_crossfade
from va.plan import Encoding, Geometry
from va.rule_settings import AssembleSettings, Picture
from va.segments import VoiceSegment

FPS, WIDTH, HEIGHT, HEAD = 25, 64, 48, 3


def clip(path: Path, levels: list[int]) -> Path:
    """A lossless clip of grey frames, one a level."""
    raw = b"".join(bytes([level]) * (WIDTH * HEIGHT) for level in levels)
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray"]
    argv += ["-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-qp", "0"]
    subprocess.run([*argv, "-pix_fmt", "yuv444p", str(path)], input=raw, check=True)
    return path


def segment(index: int, first: int, frames: int, kept: int) -> VoiceSegment:
    return VoiceSegment(
        index=index,
        name=f"{index:04d}",
        first=first,
        frames=frames,
        head_frames=HEAD,
        kept=kept,
        start_seconds=first / FPS,
        end_seconds=(first + kept) / FPS,
        audio_start_seconds=(first - HEAD) / FPS,
        audio_seconds=frames / FPS,
        seed=index,
        cut="end",
    )


def greys(path: Path) -> list[float]:
    """The mean grey level of every frame of a video."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return [float(m) for m in np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT * WIDTH).mean(axis=1)]


#: Three clips of 3 head frames and 4 new ones; the last keeps 2 of its new frames (10 in all). Each head
#: frame has its own level, so a blend with the wrong head frame shows.
CLIPS = (
    [10, 11, 12, 40, 40, 40, 40],
    [180, 200, 220, 100, 100, 100, 100],
    [230, 240, 250, 160, 160, 170, 170],
)
SEGMENTS = (segment(0, 0, 7, 4), segment(1, 4, 7, 4), segment(2, 8, 7, 2))


def joined(tmp_path: Path, crossfade: int) -> list[float]:
    clips = [clip(tmp_path / f"{n:04d}.mp4", levels) for n, levels in enumerate(CLIPS)]
    geometry = Geometry(WIDTH, HEIGHT, "contain", "black", WIDTH, HEIGHT, "", WIDTH, HEIGHT)
    picture = Picture(FPS, 10, geometry, Encoding(crf=0, preset="ultrafast"))
    settings = AssembleSettings(FPS, 10, picture, SEGMENTS, crossfade)
    target = tmp_path / "output.mp4"
    assemble_segments(settings, clips, target)
    return greys(target)


def test_without_a_crossfade_the_seams_are_hard_cuts_of_the_kept_frames(tmp_path: Path) -> None:
    assert joined(tmp_path, 0) == pytest.approx([40] * 4 + [100] * 4 + [160] * 2, abs=1.5)


def test_a_crossfade_blends_the_last_kept_frames_with_the_next_head_keeping_the_count(tmp_path: Path) -> None:
    levels = joined(tmp_path, 2)
    assert len(levels) == 10  # exactly the target: no frame added or dropped
    # Seam 1 at frame 4: frames 2 and 3 keep 2/3 and 1/3 of segment 0 (40), the rest from segment 1's
    # last two head frames (200, 220), which show the same moments; segment 1's new frames follow.
    # Seam 2 at frame 8: frames 6 and 7 blend segment 1 (100) with segment 2's head (240, 250).
    blended = [40, 40, (2 * 40 + 200) / 3, (40 + 2 * 220) / 3, 100, 100]
    blended += [(2 * 100 + 240) / 3, (100 + 2 * 250) / 3, 160, 160]
    assert levels == pytest.approx(blended, abs=1.5)


def test_a_crossfade_wider_than_a_kept_segment_blends_only_the_frames_it_keeps() -> None:
    short = (segment(0, 0, 5, 2), segment(1, 2, 7, 4))
    blend = seam_crossfade(short, 3)
    assert blend is not None
    # Two blended frames (all segment 0 keeps), of segment 1's last two head frames (6 and 7 of the
    # joined clips: segment 0's 5 frames, then segment 1's head 5, 6, 7).
    assert blend.select == "between(n,6,7)+between(n,8,11)"
    assert [frames for _, frames in blend.blends] == ["eq(n,1)", "eq(n,0)"]
    assert seam_crossfade(SEGMENTS, 0) is None
    assert seam_crossfade(SEGMENTS[:1], 2) is None
