"""Is there a face? OpenCV's bundled Haar cascade on decoded frames, for the lip-sync providers that need one.

Lip-sync models fail without a face, often after minutes of work (LatentSync's "Face not detected"). The
frontal-face cascade ships inside opencv-python-headless 4.x (``cv2.data``; 5.0 no longer ships it),
so nothing is downloaded. cv2 (and numpy) are imported on the first check only: the rule scripts that
never look for a face start without them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from typing_extensions import TypedDict  # pydantic (VIDAX's manifest) reads only this one's on Python 3.11

from va import media
from va.errors import ExitCode, VaError

if TYPE_CHECKING:
    import cv2
    import numpy
    from numpy.typing import NDArray

#: The cascade file in ``cv2.data.haarcascades``.
CASCADE = "haarcascade_frontalface_default.xml"
#: The package that ships it (pyproject.toml pins the same).
OPENCV = "opencv-python-headless 4.x (pip install 'opencv-python-headless>=4,<5')"
#: Frames are looked at no larger than this (px, longer side): a face keeps 40 px and more at that size,
#: and the cascade's time grows with the area.
ANALYSIS_SIDE = 640
#: The smallest face looked for, as a share of the frame's shorter side.
SMALLEST_FACE = 0.06
#: Frames of a video looked at, spread evenly from its first to its last.
VIDEO_SAMPLES = 8


@dataclass(frozen=True, slots=True)
class FaceBox:
    """Where a face is, in pixels of the full-size picture: its top-left corner and its size."""

    x: int
    y: int
    width: int
    height: int

    def as_text(self) -> str:
        """The ``{face_box}`` placeholder's value: ``x,y,width,height``."""
        return f"{self.x},{self.y},{self.width},{self.height}"


class FaceBoxData(TypedDict):
    """A face box as JSON data."""

    x: int
    y: int
    width: int
    height: int


class FaceSearchData(TypedDict):
    """A face search as JSON data (``FaceSearch.as_dict``)."""

    file: str
    frames: list[int]
    box: FaceBoxData | None
    faceless_frame: int | None


@dataclass(frozen=True, slots=True)
class FaceSearch:
    """What a check saw: the file, the frames it looked at, the face of the first one (None: no face
    there), and the first frame without a face (None: every frame had one)."""

    file: str
    frames: tuple[int, ...]
    box: FaceBox | None
    faceless_frame: int | None

    def refusal(self, provider_id: str) -> VaError:
        """The error of a search that found a frame without a face: exit 52, naming the file and frame."""
        return VaError(
            ExitCode.LIPSYNC_INPUT_REJECTED,
            f"no face found in frame {self.faceless_frame} of {self.file}; lip-sync provider {provider_id} "
            "needs one (needs_face: OpenCV's face detector looked before the provider ran)",
        )

    def as_dict(self) -> FaceSearchData:
        """The search as JSON data (the lip-sync stage's record)."""
        box = self.box
        data = None if box is None else FaceBoxData(x=box.x, y=box.y, width=box.width, height=box.height)
        return {
            "file": self.file,
            "frames": list(self.frames),
            "box": data,
            "faceless_frame": self.faceless_frame,
        }


def _opencv() -> ModuleType:
    """cv2, imported on the first check; without it a check is ``DEPENDENCY_MISSING``, said in one line."""
    try:
        import cv2  # noqa: PLC0415 - only a face check needs OpenCV
    except ImportError as exc:
        raise VaError(ExitCode.DEPENDENCY_MISSING, f"the face check needs {OPENCV} ({exc})") from exc
    return cv2


@functools.cache
def _cascade() -> cv2.CascadeClassifier:
    opencv = _opencv()
    folder = getattr(getattr(opencv, "data", None), "haarcascades", None)  # gone in OpenCV 5
    classifier = opencv.CascadeClassifier(str(Path(folder) / CASCADE)) if folder else None
    if classifier is None or classifier.empty():
        raise VaError(
            ExitCode.DEPENDENCY_MISSING,
            f"OpenCV {opencv.__version__} has no {CASCADE} in cv2.data; the face check needs {OPENCV}",
        )
    found: cv2.CascadeClassifier = classifier
    return found


def find_face(frame: media.RawFrame) -> FaceBox | None:
    """The largest frontal face in ``frame``, in pixels of the full-size picture; None when there is none."""
    cv2 = _opencv()
    import numpy  # noqa: PLC0415 - OpenCV's own dependency, needed only with it

    pixels = numpy.frombuffer(frame.rgb, dtype=numpy.uint8).reshape(frame.height, frame.width, 3)
    smallest = max(20, round(min(frame.width, frame.height) * SMALLEST_FACE))
    found = find_face_in_grey(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), smallest)
    if found is None:
        return None
    s = frame.scale
    return FaceBox(round(found.x * s), round(found.y * s), round(found.width * s), round(found.height * s))


def find_face_in_picture(
    grey: NDArray[numpy.uint8], *, smallest: float = 0.0, step: float = 1.1
) -> FaceBox | None:
    """The largest frontal face in a whole grey picture (a 2-D uint8 array of any size), looked for as
    ``find_face`` looks (the picture at most ``ANALYSIS_SIDE`` on its longer side, faces from
    ``SMALLEST_FACE`` of its shorter side, each size ``step`` times the one before), in the picture's
    pixels; None when there is none. ``smallest``: faces from this share of the longer side instead."""
    cv2 = _opencv()
    height, width = grey.shape
    shrink = min(1.0, ANALYSIS_SIDE / max(width, height))
    size = max(1, round(width * shrink)), max(1, round(height * shrink))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA) if shrink < 1.0 else grey
    least = round(max(size) * smallest) if smallest else round(min(size) * SMALLEST_FACE)
    found = find_face_in_grey(small, max(20, least), step=step)
    if found is None:
        return None
    grow = width / size[0]
    return FaceBox(*(round(value * grow) for value in (found.x, found.y, found.width, found.height)))


def find_face_in_grey(
    grey: NDArray[numpy.uint8], smallest: int, largest: int = 0, *, step: float = 1.1
) -> FaceBox | None:
    """The largest frontal face in a grey picture (a 2-D uint8 array), in its pixels: faces from
    ``smallest`` to ``largest`` pixels wide (0: any larger) are looked for, each size ``step`` times
    the one before; None when there is none."""
    opencv = _opencv()
    largest = largest or max(grey.shape)  # as large as the picture: any larger
    found = _cascade().detectMultiScale(
        opencv.equalizeHist(grey),
        scaleFactor=step,
        minNeighbors=5,
        minSize=(smallest, smallest),
        maxSize=(largest, largest),
    )
    if len(found) == 0:
        return None
    x, y, w, h = max(found, key=lambda box: int(box[2]) * int(box[3]))
    return FaceBox(int(x), int(y), int(w), int(h))


def search_frames(file: Path, frames: list[media.RawFrame]) -> FaceSearch:
    """Look at each frame of ``file`` in turn, up to the first without a face."""
    first: FaceBox | None = None
    for number, frame in enumerate(frames):
        box = find_face(frame)
        if box is None:
            return FaceSearch(str(file), tuple(f.index for f in frames[: number + 1]), first, frame.index)
        if number == 0:
            first = box
    return FaceSearch(str(file), tuple(f.index for f in frames), first, None)


def search_start(
    start: media.VisualInfo, indices: list[int], geometry: media.FrameGeometry, background: str
) -> FaceSearch:
    """Look for a face in frames ``indices`` of the start image or video (as the plan probed it), each
    fitted into the output picture as the held still is (so a box is in the pixels the provider gets)."""
    fitted = (geometry, background)
    frames = media.decode_frames(start.path, indices, fitted=fitted, longest_side=ANALYSIS_SIDE, probe=start)
    return search_frames(start.path, frames)


def search_video(video: Path) -> FaceSearch:
    """Look for a face in ``VIDEO_SAMPLES`` frames spread over ``video``, from its first to its last."""
    indices = media.sample_frames(media.count_video_packets(video), VIDEO_SAMPLES)
    return search_frames(video, media.decode_frames(video, indices, longest_side=ANALYSIS_SIDE))
