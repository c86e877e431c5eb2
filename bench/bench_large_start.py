"""Benchmark: the peak memory of making the held still of a large start, per kind of start.

A 48 MP phone photo (8064x6048, the largest an iPhone takes) as HEIC, as JPEG, and as a JPEG and a PNG
carrying a Display P3 profile, each made into the still and its two-second loop (what
``hold_start_frame`` does) at 1280x720 and at the start's own size (scaled to the largest frame H.264
carries). Each is run in a process of its own; its peak resident memory (``/usr/bin/time``'s %M: the
largest of the process and the ffmpeg it ran) and its CPU seconds are printed.
Run: .venv/bin/python bench/bench_large_start.py [--size WxH] [--kinds heic,jpeg,...] [--step still]
[--trees DIR,DIR] (the va of each checkout, interleaved: old against new)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRATCH = HERE / "out" / "large-start"
sys.path.insert(0, str(ROOT))

# One step in a fresh process: the still of the start at the size asked (0x0: the start's own) and its loop.
STEP = """
import sys
from pathlib import Path
from va import media
start, still, loop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
width, height = (int(side) for side in sys.argv[4].split("x"))
info = media.probe_visual(start)
asked = (width, height) if width else (None, None)
frame = media.plan_geometry(info.width, info.height, *asked, "contain", display=info.display_filter)
media.render_still(start, still, frame, "black")
if sys.argv[5] == "still+loop":
    media.encode_still_loop(still, loop, fps=25, crf=18, preset="veryfast", size=(frame.width, frame.height))
"""


def make_starts(size: tuple[int, int], kinds: list[str]) -> dict[str, Path]:
    """The large starts: a picture of gradients (so encoders have detail to code), in each kind."""
    from tests.corpus import display_p3_profile, in_profile  # noqa: PLC0415  (the corpus's profile)

    SCRATCH.mkdir(parents=True, exist_ok=True)
    source = SCRATCH / f"source-{size[0]}x{size[1]}.png"
    if not source.exists():
        graph = f"gradients=s={size[0]}x{size[1]}:c0=0x1d3557:c1=0xe9c46a:x0=0:y0=0:x1={size[0]}:y1={size[1]}"
        argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", graph, "-frames:v", "1"]
        subprocess.run([*argv, "-pix_fmt", "rgb24", str(source)], check=True)
    starts: dict[str, Path] = {}
    profile = display_p3_profile()
    for kind in kinds:
        target = SCRATCH / f"start-{size[0]}x{size[1]}-{kind}.{kind.split('-')[0]}"
        starts[kind] = target
        if target.exists():
            continue
        with Image.open(source) as opened:
            picture = opened.convert("RGB")
        if kind.endswith("-p3"):
            picture = in_profile(picture, profile)
        options: dict[str, object] = {"icc_profile": profile} if kind.endswith("-p3") else {}
        if kind == "heic":
            import pillow_heif  # noqa: PLC0415

            pillow_heif.from_pillow(picture).save(target, quality=80)  # the profile in picture.info
        elif kind.startswith("jpeg"):
            picture.save(target, format="JPEG", quality=90, **options)
        else:
            picture.save(target, format="PNG", compress_level=1, **options)
    return starts


def measure(start: Path, still_size: str, step: str, tree: Path) -> tuple[int, float]:
    """Peak resident memory (MB) and CPU seconds of making the still (and its loop) in a fresh process,
    with the ``va`` package of the checkout ``tree``."""
    still, loop = SCRATCH / "still.png", SCRATCH / "loop.mp4"
    argv = ["/usr/bin/time", "-f", "%M %U %S", sys.executable, "-c", STEP, str(start), str(still), str(loop)]
    done = subprocess.run([*argv, still_size, step], capture_output=True, text=True, check=False, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"{start.name} at {still_size} failed:\n{done.stderr}")
    peak_kb, user, system = done.stderr.strip().splitlines()[-1].split()
    return round(int(peak_kb) / 1024), float(user) + float(system)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="8064x6048")
    parser.add_argument("--kinds", default="heic,jpeg,jpeg-p3,png-p3")
    parser.add_argument("--stills", default="1280x720,0x0", help="0x0: the start's own size")
    parser.add_argument("--step", choices=("still", "still+loop"), default="still+loop")
    parser.add_argument("--trees", default=str(ROOT), help="checkouts whose va is measured, interleaved")
    args = parser.parse_args()
    if not shutil.which("/usr/bin/time"):
        raise SystemExit("needs GNU time (/usr/bin/time)")
    size = tuple(int(side) for side in args.size.split("x"))
    starts = make_starts((size[0], size[1]), args.kinds.split(","))
    trees = [Path(tree) for tree in args.trees.split(",")]
    print(f"start {args.size}; peak resident memory and CPU of the {args.step}, one process each")
    for kind, start in starts.items():
        for still_size in args.stills.split(","):
            for number, tree in enumerate(trees, 1):
                peak, cpu = measure(start, still_size, args.step, tree)
                label = "own size" if still_size == "0x0" else still_size
                print(f"{kind:8} -> {label:9} (tree {number})  {peak:5d} MB  {cpu:6.1f} s CPU")


if __name__ == "__main__":
    main()
