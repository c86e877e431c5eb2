"""Benchmark: the lip-sync check's cost on a 60 s 720p video, beside the encode of the same video. Figures
only; nothing is asserted.

The video is the synthetic talking face of the tests (tests/lipsync/talking_face.py: a photo whose mouth
opens with a speech-like voice), scaled into a 1280x720 picture at 25 fps. Timed, one after the other:

- the encode: the lip-sync stage's own re-encode of a provider's output (``media.encode_from_video`` at the
  job's default CRF and preset), which every lip-synced video goes through; the provider's model comes on
  top of it, so the stage takes at least this long, and the check's share of the stage is at most its share
  of this encode;
- the check decoding the video (``sync.measure`` + ``sync.estimate``), in a process of its own, as for a
  tool's output published as it is: wall time, CPU time (its own and ffmpeg's), and its peak resident
  memory (its own ``VmHWM``: ``ru_maxrss`` would count this process's memory too), for the 60 s video
  and for its first 15 s (memory must not grow with the length: frames are streamed). Of this
  constant-rate video the check decodes only the frames other frames refer to (825 of 1500: x264's
  B-frames that no frame refers to are skipped), the 60 s in two halves side by side;
- the re-encode measuring the mouth in the frames it encodes (``sync.mouth_tap``; then the loudness and
  ``sync.estimate``), in a process of its own, as the stage does when it re-encodes (a chunk, a padded
  run): what it costs more than the plain encode is the check's cost there.

Encodes and checks take turns (``--repeat`` of each), and the medians are printed: on a shared machine a
change of load then falls on all alike.

Goal (issue 26): the check at most 15 % of the lip-sync stage's own time on 2 cores. Measured on
2026-12-08 (docs/PERFORMANCE.md, fourth pass), taking turns with the check that decoded every frame (load
average 4.9-5.9): the check 9.7 % of the encode's wall time and 10.8 % of its CPU time (every frame
decoded: 14.7 % and 14.3 %); at load 1.7-2.9, 10.8 % and 10.2 %.
Run: .venv/bin/python bench/bench_sync.py [--seconds 60] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lipsync.talking_face import FPS, envelope, write_talking_face, write_voice  # noqa: E402
from va import media  # noqa: E402

SCRATCH = REPO / "bench" / "out" / "sync"
#: The job schema's defaults (encoding.crf, encoding.x264_preset).
CRF, PRESET = 18, "medium"
#: A process that times one way of checking (its lines between these), from the video and voice it is given.
STARTED = """
import json, re, resource, sys, time
from pathlib import Path
from va import media
from va.lipsync import sync
video, voice = Path(sys.argv[1]), Path(sys.argv[2])
began, cpu = time.monotonic(), time.process_time()
"""
REPORTED = """
def peak_mb():  # the process's own peak: ru_maxrss also counts the parent's memory it was started from
    status = Path("/proc/self/status")
    high = re.search(r"VmHWM:\\s+(\\d+)", status.read_text()) if status.exists() else None
    return int(high.group(1)) / 1024 if high else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
found = sync.estimate(track, max_offset_frames=2)
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": time.monotonic() - began, "cpu": time.process_time() - cpu,
                  "ffmpeg_cpu": children.ru_utime + children.ru_stime,
                  "peak_rss_mb": peak_mb(),
                  "verdict": found.verdict, "offset_frames": found.offset_frames,
                  "confidence": found.confidence, "frames": track.frames}))
"""
#: The check decoding the video.
CHECK = STARTED + "track = sync.measure(video, voice, 25)" + REPORTED
#: The stage's re-encode (to argv[3], argv[4] frames) measuring the mouth in its frames, then the check.
TAPPED = (
    STARTED
    + f"""
mouth = []
tap = sync.mouth_tap(video, mouth)
source = media.video_source(video)
media.encode_picture(source, None, Path(sys.argv[3]), fps=25, frames=int(sys.argv[4]), crf={CRF},
                     preset={PRESET!r}, tap=tap)
track = sync.SyncTrack(25, tuple(mouth), tuple(sync.loudness(voice, 25)))
"""
    + REPORTED
)


def ffmpeg(*argv: str) -> None:
    subprocess.run([media.executable("ffmpeg"), "-nostdin", "-v", "error", "-y", *argv], check=True)


def make_inputs(seconds: float) -> tuple[Path, Path, Path]:
    """The voice, the 720p talking face of ``seconds`` and its first 15 s."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    levels = envelope(seconds, seed=26, pauses=((20.0, 23.0),))
    voice = write_voice(SCRATCH / "voice.wav", levels)
    face = write_talking_face(SCRATCH / "face360.mp4", levels)
    video = SCRATCH / "talking720p.mp4"
    picture = "scale=720:720:flags=bicubic,pad=1280:720:280:0,setsar=1"
    ffmpeg(
        "-i", str(face), "-vf", picture, "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", str(video)
    )
    short = SCRATCH / "talking720p-15s.mp4"
    ffmpeg("-i", str(video), "-t", "15", "-c", "copy", str(short))
    return voice, video, short


def children_cpu() -> float:
    """CPU seconds of this process's finished children (ffmpeg), user and system."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def time_encode(video: Path, frames: int) -> tuple[float, float]:
    """The stage's re-encode of a provider's output: wall seconds and ffmpeg's CPU seconds."""
    target = SCRATCH / "encoded.mp4"
    target.unlink(missing_ok=True)
    began, cpu = time.monotonic(), children_cpu()
    media.encode_picture(
        media.video_source(video), None, target, fps=FPS, frames=frames, crf=CRF, preset=PRESET
    )
    return time.monotonic() - began, children_cpu() - cpu


def time_check(video: Path, voice: Path) -> dict[str, Any]:
    """The check in a fresh process (its model loaded there, as in the rule's)."""
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(video), str(voice)], check=True, capture_output=True, text=True
    )
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def time_tapped(video: Path, voice: Path, frames: int) -> dict[str, Any]:
    """The stage's re-encode with the check measuring its frames, in a fresh process."""
    target = SCRATCH / "tapped.mp4"
    target.unlink(missing_ok=True)
    argv = [sys.executable, "-c", TAPPED, str(video), str(voice), str(target), str(frames)]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median CPU time (its own and ffmpeg's)."""
    return sorted(runs, key=lambda run: run["cpu"] + run["ffmpeg_cpu"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="encodes and checks, interleaved; medians")
    args = parser.parse_args()
    voice, video, short = make_inputs(args.seconds)
    frames = round(args.seconds * FPS)
    encodes, checks, taps = [], [], []
    loads = []
    for _ in range(args.repeat):  # interleaved: a change of the machine's load falls on all alike
        loads.append(os.getloadavg()[0])
        encodes.append(time_encode(video, frames))
        checks.append(time_check(video, voice))
        taps.append(time_tapped(video, voice, frames))
    encode = statistics.median(wall for wall, _ in encodes)
    encode_cpu = statistics.median(cpu for _, cpu in encodes)
    check, tapped = _median(checks), _median(taps)
    first = time_check(short, voice)
    check_cpu = check["cpu"] + check["ffmpeg_cpu"]
    tapped_cpu = tapped["cpu"] + tapped["ffmpeg_cpu"]
    figures = {
        "seconds": args.seconds,
        "repeat": args.repeat,
        "size": "1280x720",
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "load_averages": loads,
        "encode_seconds": round(encode, 2),
        "encode_cpu_seconds": round(encode_cpu, 2),
        "check": check,
        "check_15s": first,
        "check_share_of_encode": round(check["wall"] / encode, 3),
        "check_cpu_share_of_encode": round(check_cpu / encode_cpu, 3),
        "tapped": tapped,
        "tapped_check_cpu_share_of_encode": round((tapped_cpu - encode_cpu) / encode_cpu, 3),
        "tapped_python_cpu_share_of_encode": round(tapped["cpu"] / encode_cpu, 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"lip-sync check, {args.seconds:g} s of 1280x720 at {FPS} fps, {os.cpu_count()} cores "
        f"(load average {', '.join(f'{load:.1f}' for load in loads)} at the rounds' starts; medians of "
        f"{args.repeat}, interleaved)"
    )
    print(f"  encode (crf {CRF}, {PRESET})   {encode:7.2f} s wall, {encode_cpu:.2f} s CPU")
    print(
        f"  check                      {check['wall']:7.2f} s wall, {check['cpu']:.2f} s CPU "
        f"+ {check['ffmpeg_cpu']:.2f} s ffmpeg; {check['peak_rss_mb']:.0f} MB peak"
    )
    print(f"  check of the first 15 s    {first['wall']:7.2f} s wall; {first['peak_rss_mb']:.0f} MB peak")
    print(
        f"  encode measuring the mouth {tapped['wall']:7.2f} s wall, {tapped['cpu']:.2f} s CPU (the check's "
        f"Python) + {tapped['ffmpeg_cpu']:.2f} s ffmpeg; {tapped['peak_rss_mb']:.0f} MB peak"
    )
    print(
        f"  check / encode             {figures['check_share_of_encode']:7.1%} of the wall time, "
        f"{figures['check_cpu_share_of_encode']:.1%} of the CPU time (goal: at most 15 % of the lip-sync "
        "stage, which is the encode and the model)"
    )
    print(
        f"  check in the re-encode     {figures['tapped_check_cpu_share_of_encode']:7.1%} of the CPU time "
        f"(the encode measuring the mouth, less the plain encode; its Python alone "
        f"{figures['tapped_python_cpu_share_of_encode']:.1%})"
    )
    for name, run in (("verdict", check), ("verdict, re-encode", tapped)):
        said = f"{run['verdict']} ({run['offset_frames']:+d} frames, confidence {run['confidence']})"
        print(f"  {name:<26} {said}")


if __name__ == "__main__":
    main()
