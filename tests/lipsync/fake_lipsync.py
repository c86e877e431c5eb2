"""A stand-in for a lip-sync tool, for tests: behaves as told by its first argument.

Usage: fake_lipsync.py MODE --face VIDEO --audio AUDIO --outfile OUTPUT [--dump FILE] [--config YAML]
(--dump: its argv, working directory, pid and its worker's pid as JSON.)
Modes: ok, face, oom, silent, hang (for ever, with a worker process in a session of its own),
short (a 1 s file, warning on stderr), corrupt (an undecodable file,
warning on stderr), flaky (fails once with a transient error, then works), glob, square (a 256x256
video whatever the input's size, as tools that render the face crop at their model's size).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml


def render(video: str, audio: str, output: str, seconds: float | None = None, size: str = "") -> None:
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", video, "-i", audio, "-map", "0:v", "-map", "1:a"]
    argv += ["-t", str(seconds)] if seconds else []
    argv += ["-vf", f"scale={size},setsar=1"] if size else []
    subprocess.run([*argv, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", output], check=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--face")
    parser.add_argument("--audio")
    parser.add_argument("--outfile")
    parser.add_argument("--dump")
    parser.add_argument("--config")
    args = parser.parse_args()
    told = {"argv": sys.argv[1:], "cwd": str(Path.cwd()), "pid": os.getpid()}
    if args.mode == "hang":  # as tools with worker processes do: one in a session of its own
        worker = [sys.executable, "-c", "import time; time.sleep(600)"]
        told["worker"] = subprocess.Popen(worker, start_new_session=True).pid
    if args.dump:
        Path(args.dump).write_text(json.dumps(told))
    if args.config:  # MuseTalk style: inputs from a YAML file
        task = yaml.safe_load(Path(args.config).read_text())["task_0"]
        args.face, args.audio = task["video_path"], task["audio_path"]
    print("loading model ...", flush=True)
    if args.mode == "face":
        print("Traceback (most recent call last):", file=sys.stderr)
        print(
            "ValueError: Face not detected! Ensure the video contains a face in all the frames.",
            file=sys.stderr,
        )
        return 1
    if args.mode == "oom":
        print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
        return 1
    if args.mode == "corrupt":  # exits 0 over a broken file, as MuseTalk does when its ffmpeg step fails
        Path(args.outfile).write_bytes(b"\x00not a video\x00" * 64)
        print("warning: ffmpeg mux step failed, result may be incomplete", file=sys.stderr)
        return 0
    if args.mode == "silent":
        print("something went wrong, but we exit 0 anyway", file=sys.stderr)
        return 0
    if args.mode == "hang":
        time.sleep(600)
    if args.mode == "flaky":
        marker = Path("flaky-once")  # in the working directory: the run's own folder
        if not marker.exists():
            marker.touch()
            print("RuntimeError: resource temporarily unavailable", file=sys.stderr)
            return 1
    if args.mode == "glob":
        results = Path("results") / "v15"
        results.mkdir(parents=True, exist_ok=True)
        render(args.face, args.audio, str(results / "video_audio.mp4"))
        return 0
    if args.mode == "short":
        print("warning: audio features ran out after 25 frames", file=sys.stderr)
    size = "256:256" if args.mode == "square" else ""
    render(args.face, args.audio, args.outfile, seconds=1.0 if args.mode == "short" else None, size=size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
