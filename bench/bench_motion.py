"""Benchmark: a 60 s push-in (motion.strength 1) over a 1280x720 still at 25 fps, with its audio.

1. ``va run`` of a job with ``motion.strength: 1`` (the whole tool: Snakemake, padding, the still, the
   camera move, the final mux, the manifest);
2. a bare ffmpeg one-liner making the same move (the same eased 25 % zoom through ``perspective``, the
   same x264 settings, the audio in the same pass);
3. for comparison, the usual ``zoompan`` one-liner (the same zoom path; it jitters: whole-pixel crops).

Goal: va run within 1.2x of the one-liner making the same move. Every output is checked to have the
same frame count, so the comparison is of equal work.
Run: .venv/bin/python bench/bench_motion.py [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

# The still benchmark's helpers: ffmpeg quietly, a file's frames counted, a method timed.
from bench_still import Method, ffmpeg, measure

HERE = Path(__file__).resolve().parent
SCRATCH = HERE / "out" / "motion"
VA = [sys.executable, "-m", "va"]
FPS = 25
SECONDS = 60
FRAMES = FPS * SECONDS
SIZE = "1280x720"
X264 = ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart"]


def make_media() -> tuple[Path, Path]:
    """60 s of a modulated tone and a detailed 1280x720 still (fine detail shows any jitter)."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    voice, still = SCRATCH / "voice.wav", SCRATCH / "still.png"
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=180:duration={SECONDS}", "-af", "tremolo=f=4:d=0.8", str(voice)
    )
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={SIZE}:r=1", "-frames:v", "1", "-pix_fmt", "rgb24", str(still))
    return voice, still


def run_va(voice: Path, still: Path, target_frames: int, index: int) -> Path:
    job = SCRATCH / "job.json"
    job.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "input": {"audio": str(voice), "start": str(still)},
                "motion": {"strength": 1.0, "camera": "push_in"},
                "determinism": {"fps": FPS, "seed_policy": "fixed", "seed": 1},
                "lipsync": {"enable": False},
            }
        )
    )
    workdir = SCRATCH / f"va-{index}"
    shutil.rmtree(workdir, ignore_errors=True)
    subprocess.run([*VA, "run", str(job), "--workdir", str(workdir), "-q"], check=True, capture_output=True)
    return workdir / "final.mp4"


def eased(last: int) -> str:
    """smoothstep of the output frame number, 0 at the first frame and 1 at the last."""
    return f"(st(0,clip(on/{last},0,1))*ld(0)*(3-2*ld(0)))"


def run_perspective(voice: Path, still: Path, target_frames: int, index: int) -> Path:
    target = SCRATCH / f"perspective-{index}.mp4"
    zoom = f"(1+0.25*{eased(target_frames - 1)})"
    left, top, right, bottom = f"(W-W/{zoom})/2", f"(H-H/{zoom})/2", f"(W+W/{zoom})/2", f"(H+H/{zoom})/2"
    corners = [left, top, right, top, left, bottom, right, bottom]
    names = [f"{axis}{corner}" for corner in range(4) for axis in "xy"]
    move = ":".join(f"{name}='{value}'" for name, value in zip(names, corners, strict=True))
    graph = f"format=yuv420p,perspective={move}:interpolation=linear:eval=frame"
    ffmpeg(
        "-loop",
        "1",
        "-framerate",
        str(FPS),
        "-i",
        str(still),
        "-i",
        str(voice),
        "-vf",
        graph,
        "-frames:v",
        str(target_frames),
        *X264,
        *AAC,
        str(target),
    )
    return target


def run_zoompan(voice: Path, still: Path, target_frames: int, index: int) -> Path:
    target = SCRATCH / f"zoompan-{index}.mp4"
    p = f"(on/{target_frames - 1})"
    zoom = f"1+0.25*{p}*{p}*(3-2*{p})"
    graph = f"zoompan=z='{zoom}':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d={target_frames}:s={SIZE}:fps={FPS}"
    ffmpeg(
        "-i",
        str(still),
        "-i",
        str(voice),
        "-vf",
        graph,
        "-frames:v",
        str(target_frames),
        *X264,
        *AAC,
        str(target),
    )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    voice, still = make_media()
    methods: dict[str, Method] = {
        "va run": run_va,
        "one-liner, same move": run_perspective,
        "zoompan one-liner": run_zoompan,
    }
    results = {name: measure(method, voice, still, FRAMES, args.repeat) for name, method in methods.items()}
    base = results["one-liner, same move"][0]
    figures = {
        "size": SIZE,
        "fps": FPS,
        "frames": FRAMES,
        "repeat": args.repeat,
        "methods": {
            name: {"median_seconds": round(t, 3), "frames": n, "ratio_to_one_liner": round(t / base, 2)}
            for name, (t, n) in results.items()
        },
        "goals": {"va_within_1.2x_of_the_one_liner": results["va run"][0] <= 1.2 * base},
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{SECONDS} s push-in (strength 1), {SIZE}, {FPS} fps, {FRAMES} frames; median of {args.repeat}")
    print(f"{'method':<22} {'seconds':>8} {'frames':>7} {'x one-liner':>12}")
    for name, (t, n) in results.items():
        print(f"{name:<22} {t:>8.2f} {n:>7} {t / base:>12.2f}")
    for goal, held in figures["goals"].items():
        print(f"{goal}: {'PASS' if held else 'FAIL'}")


if __name__ == "__main__":
    main()
