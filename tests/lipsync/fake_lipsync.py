"""A stand-in for a lip-sync tool, for tests: behaves as told by its first argument.

Usage: fake_lipsync.py MODE --face VIDEO --audio AUDIO --outfile OUTPUT [--dump FILE] [--config YAML]
[--box X,Y,W,H]
(--dump: its argv, working directory, pid and its worker's pid as JSON.)
Modes: ok, face, oom, silent, hang (for ever, with a worker process in a session of its own),
short (a 1 s file, warning on stderr), corrupt (an undecodable file,
warning on stderr), flaky (fails once with a transient error, then works), glob, square (a 256x256
video whatever the input's size, as tools that render the face crop at their model's size),
needs_face (as LatentSync: looks for a face in the video's frames, one a second, with OpenCV's Haar
cascade after "loading the model", and fails with "Face not detected" at the first frame without one),
talk (lip-syncs: a face whose mouth opens with the audio's loudness, frame by frame, as many frames as
the video it is given, 360x360 as a tool renders its face crop; tests/lipsync/talking_face.py).
--lag K: talk's mouth moves K frames after the voice (a tool that drifts); with --calls FILE and
--lag-calls 1,3, only those calls lag (one chunk of several; a tool whose next attempt comes out right).

The limits of real models, each an option: --max-seconds S (refuses longer audio, as a model with a fixed
context does), --frame-multiple N (works in windows of N frames and returns only whole windows, as
LatentSync returns 288 of 300 frames), --frame-form 4n+1 (refuses other frame counts, as Wan and
InfiniteTalk do). --calls FILE appends the audio it was given, one line a call; with --hang-on-call K
the K-th call hangs (a tool stuck in the middle of a long job).
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


def render(
    video: str,
    audio: str,
    output: str,
    seconds: float | None = None,
    size: str = "",
    frames: int | None = None,
) -> None:
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", video, "-i", audio, "-map", "0:v", "-map", "1:a"]
    argv += ["-t", str(seconds)] if seconds else []
    argv += ["-vf", f"scale={size},setsar=1"] if size else []
    argv += ["-frames:v", str(frames)] if frames else []
    subprocess.run([*argv, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", output], check=True)


def probe(path: str, entry: str, *extra: str) -> str:
    """One figure of the first stream of a file, as ffprobe prints it."""
    argv = ["ffprobe", "-v", "error", *extra, "-show_entries", f"stream={entry}", "-of", "csv=p=0", path]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip().split(",")[0]


def model_limits(args: argparse.Namespace) -> tuple[str | None, int | None]:
    """What a model with limits says about its inputs: a refusal (None: taken), and how many frames it
    returns (None: all)."""
    if args.max_seconds is not None:
        seconds = float(probe(args.audio, "duration"))
        if seconds > args.max_seconds + 1e-3:
            return f"RuntimeError: audio of {seconds:.2f} s exceeds the model's {args.max_seconds:g} s", None
    frames = int(probe(args.face, "nb_read_packets", "-count_packets", "-select_streams", "v:0"))
    if args.frame_form is not None:
        step, offset = (int(x) for x in args.frame_form.split("n+"))
        if frames % step != offset % step:
            return f"AssertionError: the number of frames must be {args.frame_form}, got {frames}", None
    if args.frame_multiple is not None:
        whole = frames // args.frame_multiple * args.frame_multiple
        if whole == 0:
            return f"ValueError: fewer than {args.frame_multiple} frames", None
        print(f"warning: {frames - whole} frames dropped (windows of {args.frame_multiple})", file=sys.stderr)
        return None, whole
    return None, None


def hang_here(args: argparse.Namespace) -> bool:
    """Record this call; whether it is the one to hang."""
    if args.calls is None:
        return False
    with open(args.calls, "a", encoding="utf-8") as calls:
        calls.write(f"{args.audio}\n")
    return len(Path(args.calls).read_text(encoding="utf-8").splitlines()) == args.hang_on_call


def talk(video: str, audio: str, output: str, lag: int) -> None:
    """A talking face for ``audio`` (16-bit PCM WAV, mono): its mouth opens with the audio's loudness in
    each of ``video``'s frames, ``lag`` frames late; the audio muxed in."""
    import wave  # noqa: PLC0415

    import numpy  # noqa: PLC0415 - only this mode needs numpy

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.lipsync.talking_face import FPS, shifted, write_talking_face  # noqa: PLC0415

    frames = int(probe(video, "nb_read_packets", "-count_packets", "-select_streams", "v:0"))
    with wave.open(audio) as sound:
        per_frame = sound.getframerate() // FPS
        samples = numpy.frombuffer(sound.readframes(sound.getnframes()), dtype="<i2").astype(float)
    samples = numpy.pad(samples, (0, max(0, frames * per_frame - samples.size)))[: frames * per_frame]
    levels = numpy.sqrt((samples.reshape(frames, per_frame) ** 2).mean(axis=1))
    picture = Path(output).with_name("talking.mp4")
    write_talking_face(picture, shifted(levels / max(float(levels.max()), 1e-9), lag))
    render(str(picture), audio, output, frames=frames)


def faceless_frame(video: str) -> int | None:
    """The first frame (of one a second) of ``video`` in which OpenCV's frontal-face cascade finds no face."""
    import cv2  # noqa: PLC0415 - only this mode needs OpenCV

    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    capture = cv2.VideoCapture(video)
    every = max(1, round(capture.get(cv2.CAP_PROP_FPS) or 25))
    number = 0
    try:
        while True:
            grabbed = capture.grab()
            if not grabbed:
                return None
            if number % every == 0:
                _, frame = capture.retrieve()
                grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                if (
                    len(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20)))
                    == 0
                ):
                    return number
            number += 1
    finally:
        capture.release()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--face")
    parser.add_argument("--audio")
    parser.add_argument("--outfile")
    parser.add_argument("--dump")
    parser.add_argument("--config")
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--frame-multiple", type=int)
    parser.add_argument("--frame-form")
    parser.add_argument("--calls")
    parser.add_argument("--hang-on-call", type=int)
    parser.add_argument("--box", help="the face's box, as tools that take one (Wav2Lip's --box) are told")
    parser.add_argument("--lag", type=int, default=0)
    parser.add_argument("--lag-calls")
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
    if args.mode == "needs_face":
        faceless = faceless_frame(args.face)
        if faceless is not None:
            print("Traceback (most recent call last):", file=sys.stderr)
            print(f"RuntimeError: Face not detected in frame {faceless}", file=sys.stderr)
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
    if args.mode == "hang" or hang_here(args):
        time.sleep(600)
    refusal, frames = model_limits(args)
    if refusal:
        print(refusal, file=sys.stderr)
        return 1
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
    if args.mode == "talk":
        calls = len(Path(args.calls).read_text(encoding="utf-8").splitlines()) if args.calls else 0
        late = args.lag_calls is None or str(calls) in args.lag_calls.split(",")
        talk(args.face, args.audio, args.outfile, args.lag if late else 0)
        return 0
    if args.mode == "short":
        print("warning: audio features ran out after 25 frames", file=sys.stderr)
    size = "256:256" if args.mode == "square" else ""
    seconds = 1.0 if args.mode == "short" else None
    render(args.face, args.audio, args.outfile, seconds=seconds, size=size, frames=frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
