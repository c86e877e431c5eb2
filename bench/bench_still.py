"""Benchmark: a held still with ~55 s of speech at 1280x720 and 24 fps, three ways, side by side.

1. ``va run`` (the whole tool: Snakemake start-up, padding, the still, the encode, the manifest);
2. a tuned single ffmpeg command doing the same job;
3. MoviePy doing the same job.

Each is run ``--repeat`` times (default 3); the median wall time is reported with the ratios and the
two goals (va run no slower than the tuned command, at least 2x faster than MoviePy). Every output is
checked to have the same frame count, so the comparison is of equal work.
Run: .venv/bin/python bench/bench_still.py [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRATCH = HERE / "out" / "still"
VA = [sys.executable, "-m", "va"]
FPS = 24
SECONDS = 55.0
SPEECH = (
    "The runner turns a voice track and a start image into a finished video. "
    "It pads the audio with silence, holds the picture for every frame, and encodes the result "
    "with the exact number of frames the plan asks for. "
)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_media() -> tuple[Path, Path, str]:
    """About 55 s of speech (espeak-ng, else a modulated tone) and a 1280x720 still."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    voice, still = SCRATCH / "voice.wav", SCRATCH / "still.png"
    source = "espeak-ng speech"
    if shutil.which("espeak-ng"):
        raw = SCRATCH / "speech-raw.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), SPEECH * 8], check=True)
        ffmpeg(
            "-stream_loop", "-1", "-i", str(raw), "-t", str(SECONDS), "-ar", "22050", "-ac", "1", str(voice)
        )
    else:
        source = "synthetic tone (espeak-ng not installed)"
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=180:duration={SECONDS}",
            "-af",
            "tremolo=f=4:d=0.8",
            str(voice),
        )
    graph = "gradients=s=1280x720:c0=0x1d3557:c1=0xe9c46a:x0=0:y0=0:x1=1280:y1=720,format=rgb24"
    ffmpeg("-f", "lavfi", "-i", graph, "-frames:v", "1", str(still))
    return voice, still, source


def duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


def frames(path: Path) -> int:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip())


def run_va(voice: Path, still: Path, target_frames: int, index: int) -> Path:
    job = SCRATCH / "job.json"
    job.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "input": {"audio": str(voice), "start": str(still)},
                "determinism": {"fps": FPS, "seed_policy": "fixed", "seed": 1},
                "lipsync": {"enable": False},
            }
        )
    )
    workdir = SCRATCH / f"va-{index}"
    shutil.rmtree(workdir, ignore_errors=True)
    subprocess.run([*VA, "run", str(job), "--workdir", str(workdir), "-q"], check=True, capture_output=True)
    return workdir / "final.mp4"


def run_ffmpeg(voice: Path, still: Path, target_frames: int, index: int) -> Path:
    # "Tuned": -tune stillimage (a still compresses to almost nothing after the first frame),
    # -preset veryfast, one pass, the still looped by the image demuxer, audio encoded in the same pass
    # with the same fast AAC coder va uses.
    target = SCRATCH / f"ffmpeg-{index}.mp4"
    ffmpeg(
        "-loop",
        "1",
        "-framerate",
        str(FPS),
        "-i",
        str(still),
        "-i",
        str(voice),
        "-frames:v",
        str(target_frames),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "stillimage",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-aac_coder",
        "fast",
        "-b:a",
        "192k",
        "-movflags",
        "+faststart",
        str(target),
    )
    return target


def run_moviepy(voice: Path, still: Path, target_frames: int, index: int) -> Path:
    from moviepy import AudioFileClip, ImageClip  # noqa: PLC0415 - only this method needs it

    target = SCRATCH / f"moviepy-{index}.mp4"
    audio = AudioFileClip(str(voice))
    clip = ImageClip(str(still)).with_duration(target_frames / FPS).with_audio(audio)
    clip.write_videofile(
        str(target),
        fps=FPS,
        codec="libx264",
        audio_codec="aac",
        preset="veryfast",
        logger=None,
        ffmpeg_params=["-tune", "stillimage", "-crf", "18", "-pix_fmt", "yuv420p"],
    )
    audio.close()
    clip.close()
    return target


Method = Callable[[Path, Path, int, int], Path]


def measure(method: Method, voice: Path, still: Path, target_frames: int, repeat: int) -> tuple[float, int]:
    times, counted = [], 0
    for index in range(repeat):
        began = time.perf_counter()
        output = method(voice, still, target_frames, index)
        times.append(time.perf_counter() - began)
        counted = frames(output)
    return statistics.median(times), counted


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    voice, still, source = make_media()
    seconds = duration(voice)
    target_frames = round(seconds * FPS)
    methods: dict[str, Method] = {"va run": run_va, "tuned ffmpeg": run_ffmpeg, "moviepy": run_moviepy}
    results = {
        name: measure(method, voice, still, target_frames, args.repeat) for name, method in methods.items()
    }
    base = results["va run"][0]
    figures = {
        "audio": source,
        "audio_seconds": round(seconds, 3),
        "size": "1280x720",
        "fps": FPS,
        "target_frames": target_frames,
        "repeat": args.repeat,
        "methods": {
            name: {"median_seconds": round(t, 3), "frames": n, "ratio_to_va": round(t / base, 2)}
            for name, (t, n) in results.items()
        },
        "goals": {
            "va_no_slower_than_tuned_ffmpeg": base <= results["tuned ffmpeg"][0],
            "va_at_least_2x_faster_than_moviepy": results["moviepy"][0] >= 2 * base,
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{seconds:.1f} s of {source}, 1280x720 still, {FPS} fps, {target_frames} frames")
    print(f"median of {args.repeat} runs each")
    print(f"{'method':<14} {'seconds':>8} {'frames':>7} {'x va run':>9}")
    for name, (t, n) in results.items():
        print(f"{name:<14} {t:>8.2f} {n:>7} {t / base:>9.2f}")
    for goal, held in figures["goals"].items():
        print(f"{goal}: {'PASS' if held else 'FAIL'}")


if __name__ == "__main__":
    main()
