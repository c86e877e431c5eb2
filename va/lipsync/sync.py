"""Does the mouth move with the voice? The lip-sync stage's sync check (docs/LIPSYNC_INTERFACE.md).

The field's measure, SyncNet's offset and confidence, needs weights no package registry ships. This check
uses what PyPI does ship: dlib's 68-point face landmarks (``dlib-bin``, the model in
``face-recognition-models``). Frame by frame it measures how far the lips are apart, against the voice's
loudness in the same frame; the lag at which the two series agree best is the offset, in frames, positive
when the picture lags the voice. Frames and audio are streamed from ffmpeg: memory holds one frame and
two numbers a frame, whatever the length.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import itertools
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Required

from typing_extensions import TypedDict  # pydantic (VIDAX's manifest) reads only this one's on Python 3.11

from va import face, media
from va.errors import ExitCode, VaError
from va.face import FaceBox

if TYPE_CHECKING:  # only named in signatures: a rule parsing its settings loads no job schema
    from va.job import SyncCheckSettings
    from va.lipsync.providers import Provider

#: The landmark model inside ``face-recognition-models``: dlib's 5 points (the outer and inner corners of
#: both eyes, the nose's base), which place the mouth; loaded in a twentieth of the 68-point model's time.
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"
PACKAGES = "dlib-bin and face-recognition-models (pip install dlib-bin face-recognition-models)"
#: The face's size in the frames measured (px wide, as OpenCV's cascade boxes it): frames are decoded cut
#: to the face found in the first frame and ``FACE_MARGIN`` of its width around it, then scaled so; a
#: smaller face is scaled up at most ``MAX_UPSCALE`` times. Decoding the cut at that size costs a fraction
#: of a whole frame's, and the mouth keeps some 25 px.
FACE_PIXELS = 100
FACE_MARGIN = 0.6
MAX_UPSCALE = 2.0
#: Without a face in the first frame, the whole picture is looked at, no larger than this (px).
WHOLE_SIDE = 480
#: The luma of black in the frames measured (their luma plane as stored, limited range): the mouth's
#: darkness is measured above it, as on the picture converted to full range, which ffmpeg need not do.
LUMA_BLACK = 16.0
#: The face is looked for again every this many frames (sizes ``DETECT_STEP`` apart, near the size found
#: first), and the landmarks fitted every ``FIT_EVERY``: a head moves little in 0.4 s, and a fit costs 200
#: frames' measure of the mouth.
DETECT_EVERY = 50
DETECT_STEP = 1.25
FIT_EVERY = 10
#: A constant-rate video of at least this many frames (20 s at 25 fps) is decoded in two halves side by
#: side (two ffmpeg processes, the later half read in a thread of its own): each decode is one thread, and
#: the encode the check is measured against uses both cores. The cut is at a look for the face.
HALVES_FROM_FRAMES = 10 * DETECT_EVERY
#: OpenCV's cascade and dlib's predictor are one object each a process, and neither may be used by two
#: threads at once (the halves' threads; a shared cascade found other faces in 35 of 60 calls).
_MODELS = threading.Lock()
#: The mouth's box, in outer-eye-corner distances from the nose's base: down from ``MOUTH_TOP`` to
#: ``MOUTH_BOTTOM`` (the upper lip to below the lower lip of an open mouth), ``MOUTH_HALF_WIDTH`` each side.
MOUTH_TOP, MOUTH_BOTTOM, MOUTH_HALF_WIDTH = 0.12, 0.55, 0.25
#: The lags tried, in frames either way: SyncNet's evaluation searches the same +-15.
MAX_LAG_FRAMES = 15
#: Audio samples a frame's loudness is measured over (the sample rate follows: 400 x fps), read this many
#: frames' at a time.
SAMPLES_PER_FRAME = 400
LOUDNESS_BLOCK = 250
#: A frame is speech when it is within this many dB of the loud frames (the 95th percentile) ...
SPEECH_RANGE_DB = 30.0
#: ... and louder than this (dBFS): digital silence and room noise are not speech.
SPEECH_FLOOR_DBFS = -50.0
#: Quieter frames count as this far below the loud frames: a pause is a pause, however quiet.
LOUDNESS_RANGE_DB = 40.0
#: Too little to tell below these: a share of frames with a face, seconds of speech, a mouth that moves
#: (its opening's spread, in eye-corner distances), and the match's confidence.
MIN_FACE_SHARE = 0.5
MIN_SPEECH_SECONDS = 1.5
MIN_MOUTH_SPREAD = 0.03
MIN_CONFIDENCE = 0.3
#: A face whose outer eye corners are closer than this (px, in a picture scaled to ``ANALYSIS_SIDE`` on its
#: longer side) counts as none: the mouth of a smaller face is a few pixels.
ANALYSIS_SIDE = 640
MIN_EYES_PIXELS = 30.0
#: The first frame's face is looked for from this width (px, at ``ANALYSIS_SIDE``): the outer eye corners
#: span some 0.6 of the cascade's box, so a narrower face cannot have them ``MIN_EYES_PIXELS`` apart, and
#: the smallest sizes are most of the search's time.
MIN_FACE_PIXELS = 45
#: A face is looked for again first near where it is (this share of its width around it, sizes within
#: ``DETECT_STEP`` of its own), and in the whole window only when it is not found there.
NEAR_MARGIN = 0.35
#: Slow changes (a head turning, a voice getting louder) are taken out over this many seconds first.
DETREND_SECONDS = 1.0

IN_SYNC, OUT_OF_SYNC, NO_VERDICT = "in_sync", "out_of_sync", "no_verdict"
#: The measured track beside a lip-sync result (``lipsync/sync.json``, a chunk's own).
TRACK_NAME = "sync.json"
#: The loudness a frame without a voice counts as (dBFS).
SILENT_DBFS = -120.0


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """The job's ``lipsync.sync_check``, resolved: whether it runs, the offset it tolerates, what an
    out-of-sync video does (``fail``: not published as the final; ``warn``: published, said), and whether
    an out-of-sync chunk is made once more."""

    enabled: bool
    max_offset_frames: int = 2
    on_fail: str = "fail"
    retry: bool = False
    #: Why the check does not run (when it does not), for the record.
    reason: str = ""


def resolve_settings(check: SyncCheckSettings, provider: Provider) -> SyncSettings:
    """The job's ``lipsync.sync_check`` for ``provider``: on when asked, or, left unsaid, when the
    provider needs a face (a tool that moves lips); the audiogram and other tools that need none are
    not checked unless the job asks."""
    enabled = check.enable if check.enable is not None else bool(provider.settings.get("needs_face"))
    reason = ""
    if check.enable is False:
        reason = "not checked: lipsync.sync_check.enable is false"
    elif not enabled:
        reason = f"not checked: provider {provider.id} needs no face (lipsync.sync_check.enable turns it on)"
    return SyncSettings(enabled, check.max_offset_frames, check.on_fail, check.retry, reason)


def resolve_model_settings(check: SyncCheckSettings, template: str, in_model: bool) -> SyncSettings:
    """The job's ``lipsync.sync_check`` for the picture of ComfyUI ``template``: on, unless the job says
    ``enable: false``, when the template lip-syncs in the model (``lipsync_in_model``); the model's
    segments are not made again (``retry`` is for a lip-sync tool's chunks)."""
    if not in_model:
        return UNCHECKED
    if check.enable is False:
        return SyncSettings(False, reason="not checked: lipsync.sync_check.enable is false")
    return SyncSettings(True, check.max_offset_frames, check.on_fail, False)


#: The settings of a stage planned before the check existed: not checked.
UNCHECKED = SyncSettings(enabled=False, reason="not checked")


class TrackData(TypedDict):
    """A track as JSON data (``lipsync/sync.json``)."""

    fps: int
    mouth: list[float | None]
    loudness: list[float]


class SyncData(TypedDict, total=False):
    """A verdict as JSON data: the manifest's ``phases.lipsync.sync`` and each of its ``chunks``
    (docs/LIPSYNC_INTERFACE.md#the-sync-check)."""

    verdict: Required[str]
    offset_frames: Required[int | None]
    confidence: Required[float | None]
    frames: int
    reason: str
    chunk: str
    start_seconds: float
    end_seconds: float
    max_offset_frames: int
    attempts: int
    #: What ``chunks`` are: a lip-sync tool's chunks (said so when absent), or a model's ``segment`` s.
    unit: str
    chunks: list[SyncData]
    kept: str


@dataclass(frozen=True, slots=True)
class SyncTrack:
    """What was measured, a value a frame: the mouth's opening (inner-lip gap over the eyes' distance;
    None: no face in that frame) and the voice's loudness (dBFS)."""

    fps: int
    mouth: tuple[float | None, ...]
    loudness: tuple[float, ...]

    @property
    def frames(self) -> int:
        """Frames measured: those with both a picture and a voice."""
        return min(len(self.mouth), len(self.loudness))

    def window(self, first: int, frames: int) -> SyncTrack:
        """The part of the track from frame ``first``, ``frames`` long."""
        last = first + frames
        return SyncTrack(self.fps, self.mouth[first:last], self.loudness[first:last])

    def as_dict(self) -> TrackData:
        """The track as JSON data (``lipsync/sync.json``: what the report plots)."""
        rounded = [None if value is None else round(value, 4) for value in self.mouth]
        return {"fps": self.fps, "mouth": rounded, "loudness": [round(v, 2) for v in self.loudness]}

    @staticmethod
    def from_dict(data: TrackData) -> SyncTrack:
        """A track read back from ``as_dict``'s data."""
        return SyncTrack(int(data["fps"]), tuple(data["mouth"]), tuple(data["loudness"]))


@dataclass(frozen=True, slots=True)
class SyncEstimate:
    """The verdict on one stretch (a chunk, or the whole): the offset in frames (positive: the picture
    lags the voice), the confidence (the best lag's correlation above the median lag's), and why there
    is no verdict when there is none."""

    verdict: str
    offset_frames: int | None
    confidence: float | None
    frames: int
    reason: str = ""
    #: The chunk's name (empty for the whole video) and where it starts and ends in the padded audio.
    chunk: str = ""
    start_seconds: float = 0.0
    end_seconds: float = 0.0

    def as_dict(self) -> SyncData:
        """The estimate as JSON data (the manifest's ``phases.lipsync.sync``, a chunk's entry in it)."""
        data: SyncData = {
            "verdict": self.verdict,
            "offset_frames": self.offset_frames,
            "confidence": self.confidence,
            "frames": self.frames,
        }
        if self.reason:
            data["reason"] = self.reason
        if self.chunk:
            data["chunk"] = self.chunk
        data["start_seconds"], data["end_seconds"] = self.start_seconds, self.end_seconds
        return data

    @staticmethod
    def from_dict(data: SyncData) -> SyncEstimate:
        """An estimate read back from ``as_dict``'s data."""
        return SyncEstimate(
            data["verdict"],
            data["offset_frames"],
            data["confidence"],
            data.get("frames", 0),
            data.get("reason", ""),
            data.get("chunk", ""),
            data.get("start_seconds", 0.0),
            data.get("end_seconds", 0.0),
        )


def _import_dlib() -> Any:
    try:
        import dlib  # noqa: PLC0415 - only the sync check needs dlib
    except ImportError as exc:
        raise VaError(ExitCode.DEPENDENCY_MISSING, f"the lip-sync check needs {PACKAGES} ({exc})") from exc
    return dlib


def landmark_model() -> Path:
    """The 5-point model's file inside ``face-recognition-models``, found without importing the package
    (its ``__init__`` imports ``pkg_resources``, which newer setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    found = [Path(folder) / "models" / LANDMARK_MODEL for folder in folders]
    if not found or not found[0].is_file():
        raise VaError(
            ExitCode.DEPENDENCY_MISSING, f"the lip-sync check needs {PACKAGES}: no {LANDMARK_MODEL}"
        )
    return found[0]


@functools.cache
def _predictor() -> Any:
    """dlib's 5-point landmark predictor, loaded once a process."""
    return _import_dlib().shape_predictor(str(landmark_model()))


@dataclass(frozen=True, slots=True)
class _Boxes:
    """Where to look in an analysed frame (rows, then columns, as slices): the mouth, and the skin
    between the eyes and the nose that it is compared with."""

    mouth: tuple[slice, slice]
    reference: tuple[slice, slice]
    nose: tuple[float, float]

    def darkness(self, pixels: Any) -> float:
        """How much darker the mouth is than the reference skin: 0 as light, towards 1 as dark (measured
        above the luma's black, ``LUMA_BLACK``: as on the picture converted to full range)."""
        skin = _mean(pixels, self.reference) - LUMA_BLACK
        return 1.0 - (_mean(pixels, self.mouth) - LUMA_BLACK) / max(skin, 1.0)


def _mean(pixels: Any, box: tuple[slice, slice]) -> float:
    """The mean of ``box`` (inside ``pixels``): its sum over its area, a third of numpy's ``mean``'s time."""
    rows, columns = box
    area: int = (rows.stop - rows.start) * (columns.stop - columns.start)
    return int(pixels[box].sum()) / area


def _box(centre_x: float, top: float, bottom: float, half_width: float) -> tuple[slice, slice]:
    return slice(round(top), round(bottom) + 1), slice(
        round(centre_x - half_width), round(centre_x + half_width) + 1
    )


def _fit(pixels: Any, face: FaceBox, min_eyes: float) -> _Boxes | None:
    """The mouth's and the reference's boxes from dlib's 5 landmarks in the ``face`` box, and the nose's
    base (None: a face whose outer eye corners are closer than ``min_eyes`` pixels)."""
    dlib = _import_dlib()
    box = dlib.rectangle(face.x, face.y, face.x + face.width, face.y + face.height)
    with _MODELS:
        shape = _predictor()(pixels, box)
    points = [(float(shape.part(i).x), float(shape.part(i).y)) for i in range(5)]
    (ax, ay), (bx, by) = points[0], points[2]
    eyes = ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5
    nose_x, nose_y = points[4]
    if eyes < min_eyes:
        return None
    between_y = (sum(y for _, y in points[:4]) / 4 + nose_y) / 2
    mouth = _box(nose_x, nose_y + MOUTH_TOP * eyes, nose_y + MOUTH_BOTTOM * eyes, MOUTH_HALF_WIDTH * eyes)
    reference = _box(nose_x, between_y - 0.1 * eyes, between_y + 0.1 * eyes, 0.1 * eyes)
    height, width = pixels.shape
    inside = all(
        s.start >= 0 and s.stop <= limit
        for box in (mouth, reference)
        for s, limit in zip(box, (height, width), strict=True)
    )
    return _Boxes(mouth, reference, (nose_x, nose_y)) if inside else None


@dataclass(frozen=True, slots=True)
class _Window:
    """What of a video is decoded, the smallest distance of the outer eye corners that counts, and the
    faces' widths looked for (0: any larger), all in the decoded pixels."""

    crop: media.Crop
    min_eyes: float
    smallest: int
    largest: int


def _window(video: Path) -> _Window:
    """What of ``video`` is decoded: the face of its first frame (OpenCV's cascade) and what is around
    it, the face scaled to ``FACE_PIXELS`` wide; without a face there, the whole picture, at most
    ``WHOLE_SIDE``. And the smallest distance of the outer eye corners that counts, in its pixels."""
    import numpy  # noqa: PLC0415 - OpenCV's and dlib's dependency, needed only with them

    first = media.first_grey_frame(video)
    pixels = numpy.frombuffer(first.pixels, dtype=numpy.uint8).reshape(first.height, first.width)
    found = face.find_face_in_picture(pixels, smallest=MIN_FACE_PIXELS / ANALYSIS_SIDE, step=DETECT_STEP)
    full = max(first.width, first.height)
    if found is None:
        scale = min(1.0, WHOLE_SIDE / full)
        crop = media.Crop(
            0, 0, first.width, first.height, _even(first.width * scale), _even(first.height * scale)
        )
        return _Window(crop, MIN_EYES_PIXELS * full / ANALYSIS_SIDE * scale, 40, 0)
    margin = FACE_MARGIN * found.width
    left, top = max(0, _even(found.x - margin)), max(0, _even(found.y - margin))
    right = min(first.width, _even(found.x + found.width + margin))
    bottom = min(first.height, _even(found.y + found.height + margin))
    scale = min(MAX_UPSCALE, FACE_PIXELS / found.width)
    width, height = right - left, bottom - top
    crop = media.Crop(left, top, width, height, _even(width * scale), _even(height * scale))
    size = found.width * scale
    return _Window(crop, MIN_EYES_PIXELS * full / ANALYSIS_SIDE * scale, round(0.6 * size), round(1.6 * size))


def _where(found: FaceBox, anchor: tuple[float, float] | None, boxes: _Boxes | None) -> FaceBox:
    """Where the face ``found`` is now: its box follows the nose's base, from ``anchor`` (where it was when
    the face was found) to where the last fit put it, as the head moves, until it is looked for again."""
    if anchor is None or boxes is None:
        return found
    now = boxes.nose
    return dataclasses.replace(
        found, x=round(found.x + now[0] - anchor[0]), y=round(found.y + now[1] - anchor[1])
    )


def _look_again(pixels: Any, window: _Window, near: FaceBox | None) -> FaceBox | None:
    """The face in an analysed frame: looked for first around ``near`` (where it was last seen) at about
    its size, which costs a fraction of a search of the whole window; then in the whole window."""
    if near is not None:
        margin = round(NEAR_MARGIN * near.width)
        left, top = max(0, near.x - margin), max(0, near.y - margin)
        around = pixels[top : near.y + near.height + margin, left : near.x + near.width + margin]
        smallest = max(window.smallest, round(near.width / DETECT_STEP))
        largest = round(near.width * DETECT_STEP)
        largest = min(largest, window.largest) if window.largest else largest
        if min(around.shape) >= largest and smallest <= largest:
            with _MODELS:
                found = face.find_face_in_grey(around, smallest, largest, step=DETECT_STEP)
            if found is not None:
                return dataclasses.replace(found, x=found.x + left, y=found.y + top)
    with _MODELS:
        return face.find_face_in_grey(pixels, window.smallest, window.largest, step=DETECT_STEP)


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def mouth_openings(video: Path) -> Iterator[float | None]:
    """The mouth's opening in each frame of ``video`` (None where no face is found), frames streamed: how
    much darker the mouth's box is than the skin above it. The face is looked for again every
    ``DETECT_EVERY`` frames; the frames since the last look count only when it is still there. Of a
    constant-rate MP4, MOV, Matroska or WebM video (``media.shown_by_time``) only the frames other frames
    refer to are decoded (about 55 % of x264's: ``media.referenced_grey_frames``; a frame left out takes
    the opening between its neighbours'), a long one in two halves at once (``HALVES_FROM_FRAMES``), each
    half's face looked for at its first frame; when that decode leaves out more than ``MAX_SKIPPED``
    frames in a row, every frame from the first not yet measured is decoded: in the second half, from the
    split on (the first half measured whole first, whatever the second did meanwhile); in the first half
    or a video decoded in one go, by a decode from frame 0, the frames measured already dropped. Any other
    video is decoded whole, every frame."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        timed = pool.submit(_timing, video)  # its probe runs beside the first frame's decode
        window = _window(video)
        timing = timed.result()
    given = 0  # the frames measured from the decode of the referenced frames
    if timing is not None and window.crop.out_width >= media.NUMBER_BYTES:  # wide enough for the numbers
        with closing(_sparse_openings(video, window, timing)) as sparse:
            try:
                for opening in sparse:
                    yield opening
                    given += 1
            except _TooSparse as sparse_from:
                # The first half measured whole (a decode that ended early gave fewer): every frame on.
                if sparse_from.split and given == sparse_from.split:
                    split = sparse_from.split
                    whole = media.grey_frames_from(video, window.crop, rate=timing.rate, first=split)
                    with closing(whole) as frames:
                        yield from _openings(frames, window, first=split)
                    return
            else:
                return
    with closing(media.grey_frames(video, crop=window.crop)) as frames:
        yield from itertools.islice(_openings(frames, window), given, None)


#: The most frames in a row the decode of the referenced frames may leave out (each takes the opening
#: between its neighbours'): x264's defaults leave out one (B-frames in a pyramid), three B-frames and no
#: pyramid leave out three. A video that leaves out more is decoded whole from there on.
MAX_SKIPPED = 2


class _TooSparse(Exception):
    """The decode of the referenced frames left out more than ``MAX_SKIPPED`` frames in a row, or none:
    in the second half (``split``, its first frame: the first half's frames all measured), or elsewhere
    (0)."""

    def __init__(self, split: int = 0) -> None:
        super().__init__(split)
        self.split = split


def _sparse_openings(video: Path, window: _Window, timing: _Timing) -> Generator[float | None, None, None]:
    """``mouth_openings`` of ``video`` from the frames other frames refer to; ``_TooSparse`` when they
    leave out too many (the openings given so far are those of the frames before). When the second half
    leaves out too many, the first is still measured whole, up to the split, and only then is
    ``_TooSparse`` (with the split) raised: the same openings given whatever the two threads' timing."""
    whole = media.referenced_grey_frames(video, window.crop, rate=timing.rate)
    halt = (
        threading.Event()
    )  # the first half ended early (left out too many, failed, closed): the second stops
    if not timing.split:
        with closing(whole) as frames:
            yield from _openings(_dense(frames), window)
        return
    split = timing.split
    later: list[float | None] = []
    failed: list[BaseException] = []  # the second half's failure, _TooSparse among them

    def second_half() -> None:
        # From a few frames early: a frame decoded before the split, to fill the frames after it from.
        start = split - MAX_SKIPPED - 1
        try:
            frames = media.referenced_grey_frames(video, window.crop, rate=timing.rate, first=start)
            with closing(frames):
                going = _openings(_dense(frames, halt, before=split), window, first=start)
                later.extend(itertools.islice(going, split - start, None))
        except BaseException as exc:  # raised again in the reading thread, below
            failed.append(exc)

    thread = threading.Thread(target=second_half, name="mouth-second-half", daemon=True)
    thread.start()
    done = False
    try:
        with closing(whole) as frames:  # closed past the split: its ffmpeg need not decode the rest
            yield from itertools.islice(_openings(_dense(_through(frames, split)), window), split)
        done = True
    finally:
        if not done:
            halt.set()  # closing the second half's frames ends its ffmpeg
        thread.join()
    if failed and isinstance(failed[0], _TooSparse):
        raise _TooSparse(split) from failed[0]
    if failed:
        raise failed[0]
    yield from later


def _dense(
    frames: Iterable[media.GreyFrame], halt: threading.Event | None = None, *, before: int | None = None
) -> Iterator[media.GreyFrame]:
    """``frames`` as long as they leave out at most ``MAX_SKIPPED`` frames in a row after the first (and,
    with ``before``, the first is numbered before it); ``_TooSparse`` when they leave out more, when none
    comes, or when ``halt`` is set (the first half ended early: the second's frames are not wanted)."""
    last: int | None = None
    for frame in frames:
        if halt is not None and halt.is_set():
            raise _TooSparse
        early = last is None and before is not None and frame.number >= before
        if early or (last is not None and frame.number - last - 1 > MAX_SKIPPED):
            raise _TooSparse
        last = frame.number if last is None else max(last, frame.number)
        yield frame
    if last is None:
        raise _TooSparse


def _through(frames: Iterable[media.GreyFrame], end: int) -> Iterator[media.GreyFrame]:
    """``frames`` up to the first numbered ``end`` or later, that one too (the frames left out before it
    are filled from it)."""
    for frame in frames:
        yield frame
        if frame.number >= end:
            return


@dataclass(frozen=True, slots=True)
class _Timing:
    """A constant-rate video as ``mouth_openings`` decodes it: its rate, its frames, and the first frame
    of its second half (0: decoded in one go)."""

    rate: Fraction
    frames: int
    split: int


def _timing(video: Path) -> _Timing | None:
    """``video``'s rate and frames when it has one constant rate and its frames are numbered by their
    times (``media.shown_by_time``; None for any other), and where its second half starts when it has at
    least ``HALVES_FROM_FRAMES`` frames: at a multiple of ``DETECT_EVERY`` near its middle."""
    if not media.shown_by_time(video):
        return None
    try:
        probe = media.probe_video(video)
        rate = Fraction(probe.r_frame_rate)
    except (VaError, ValueError, ZeroDivisionError):
        return None
    if probe.r_frame_rate != probe.avg_frame_rate or rate <= 0 or probe.packets <= 0:
        return None
    split = probe.packets // 2 // DETECT_EVERY * DETECT_EVERY if probe.packets >= HALVES_FROM_FRAMES else 0
    return _Timing(rate, probe.packets, split)


def mouth_tap(source: Path, mouth: list[float | None]) -> media.PictureTap:
    """For an encode of ``source``'s picture (at its size): a tap that adds the mouth's opening in each
    frame encoded to ``mouth``, as ``mouth_openings`` measures it in the encoded video, without decoding
    that video again."""
    window = _window(source)

    def take(frames: Iterator[media.GreyFrame]) -> None:
        mouth.extend(_openings(frames, window))

    return media.PictureTap(window.crop, take)


def _openings(
    frames: Iterable[media.GreyFrame], window: _Window, *, first: int = 0
) -> Iterator[float | None]:
    """``mouth_openings`` of ``frames`` (numbered from ``first``), cut and scaled as ``window`` says, up to
    the last frame decoded. The face is looked for at the first frame decoded at or after each multiple
    of ``DETECT_EVERY``, its landmarks fitted so at each multiple of ``FIT_EVERY``. A frame not decoded
    (not among ``frames``) takes the opening between those of the frames decoded either side (None when
    one of them has none)."""
    import numpy  # noqa: PLC0415 - OpenCV's and dlib's dependency, needed only with them

    found: FaceBox | None = None
    boxes: _Boxes | None = None
    anchor: tuple[float, float] | None = None  # the nose's base where the face was found
    pending: list[float | None] = []  # the frames since the last look: they count if the face is still there
    pixels = None
    number, last = first - 1, None  # the last frame decoded and its opening
    look = fit = first  # the frames from which the face is looked for, and fitted, next
    for frame in frames:
        if frame.number <= number:
            continue  # a time that rounds to a frame already measured
        pixels = numpy.frombuffer(frame.pixels, dtype=numpy.uint8).reshape(frame.height, frame.width)
        if frame.number >= look:
            found = _look_again(pixels, window, found and _where(found, anchor, boxes))
            yield from pending if found is not None else [None] * len(pending)
            pending, boxes, anchor = [], None, None
            look = (frame.number // DETECT_EVERY + 1) * DETECT_EVERY
        opening = None
        if found is not None:
            if boxes is None or frame.number >= fit:
                boxes = _fit(pixels, _where(found, anchor, boxes), window.min_eyes)
                anchor = anchor or (boxes.nose if boxes is not None else None)
                fit = (frame.number // FIT_EVERY + 1) * FIT_EVERY
            opening = None if boxes is None else boxes.darkness(pixels)
        between = _between(last, opening, frame.number - number - 1)
        if found is None:
            yield from [*between, None]
        else:
            pending += [*between, opening]
        number, last = frame.number, opening
    if pending:  # the last frames count when the last frame still shows the face
        near = found and _where(found, anchor, boxes)
        still = pixels is not None and _look_again(pixels, window, near) is not None
        yield from pending if still else [None] * len(pending)


def _between(before: float | None, after: float | None, frames: int) -> list[float | None]:
    """The openings of ``frames`` frames not decoded between two that were: on the line from ``before``
    to ``after`` (the mouth moves little in a frame's time), None when one of them is None."""
    if before is None or after is None:
        return [None] * frames
    step = (after - before) / (frames + 1)
    return [before + step * (index + 1) for index in range(frames)]


def loudness(audio: Path, fps: int) -> Generator[float, None, None]:
    """The loudness (dBFS, RMS) of ``audio`` in each frame's time at ``fps``, streamed (``LOUDNESS_BLOCK``
    frames' samples at a time, measured together)."""
    import numpy  # noqa: PLC0415

    per_block = SAMPLES_PER_FRAME * LOUDNESS_BLOCK
    blocks = media.pcm_blocks(audio, sample_rate=SAMPLES_PER_FRAME * fps, samples=per_block)
    with closing(blocks):
        for block in blocks:
            samples = numpy.frombuffer(block, dtype="<i2").astype(numpy.float64) / 32768.0
            whole = samples.size - samples.size % SAMPLES_PER_FRAME
            powers = list(numpy.mean(numpy.square(samples[:whole]).reshape(-1, SAMPLES_PER_FRAME), axis=1))
            if whole < samples.size:  # the audio's last, shorter frame
                powers.append(numpy.mean(numpy.square(samples[whole:])))
            yield from (20.0 * float(numpy.log10(max(float(numpy.sqrt(p)), 1e-6))) for p in powers)


def measure(video: Path, audio: Path, fps: int) -> SyncTrack:
    """The mouth of ``video`` and the loudness of ``audio`` (from the same start), frame by frame. The
    voice is measured in a thread of its own, beside the picture."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        voice = pool.submit(lambda: tuple(loudness(audio, fps)))
        mouth = tuple(mouth_openings(video))
        return SyncTrack(fps, mouth, voice.result())


def _detrended(values: Any, frames: int) -> Any:
    """``values`` less their moving average over ``frames`` frames (NaN kept where a value is missing)."""
    import numpy  # noqa: PLC0415

    valid = ~numpy.isnan(values)
    kernel = numpy.ones(max(1, frames))
    sums = numpy.convolve(numpy.where(valid, values, 0.0), kernel, mode="same")
    counts = numpy.convolve(valid.astype(numpy.float64), kernel, mode="same")
    return values - sums / numpy.maximum(counts, 1.0)


def _correlations(mouth: Any, voice: Any, lags: range) -> list[float]:
    """Pearson's r of the mouth at frame t and the voice at frame t - lag, for each lag (over the frames
    where both are known; 0 where there are too few or one side does not vary)."""
    import numpy  # noqa: PLC0415

    found = []
    n = len(mouth)
    for lag in lags:
        m = mouth[max(0, lag) : n + min(0, lag)]
        v = voice[max(0, -lag) : n - max(0, lag)]
        both = ~(numpy.isnan(m) | numpy.isnan(v))
        m, v = m[both], v[both]
        if m.size < 3 or m.std() == 0 or v.std() == 0:
            found.append(0.0)
        else:
            found.append(float(numpy.corrcoef(m, v)[0, 1]))
    return found


def estimate(
    track: SyncTrack, *, max_offset_frames: int, chunk: str = "", start_seconds: float = 0.0
) -> SyncEstimate:
    """The offset between the mouth and the voice of ``track``, and the verdict: ``in_sync`` within
    ``max_offset_frames``, ``out_of_sync`` beyond, ``no_verdict`` when there is too little to tell (no
    face, too little speech, a mouth that does not move, no lag that clearly matches)."""
    import numpy  # noqa: PLC0415

    frames = track.frames
    verdict = functools.partial(
        SyncEstimate,
        frames=frames,
        chunk=chunk,
        start_seconds=round(start_seconds, 3),
        end_seconds=round(start_seconds + frames / track.fps, 3),
    )
    if frames == 0:
        return verdict(NO_VERDICT, None, None, reason="nothing to measure")
    mouth = numpy.array([numpy.nan if v is None else v for v in track.mouth[:frames]], dtype=numpy.float64)
    voice = numpy.array(track.loudness[:frames], dtype=numpy.float64)
    with_face = int((~numpy.isnan(mouth)).sum())
    if with_face < MIN_FACE_SHARE * frames:
        return verdict(
            NO_VERDICT, None, None, reason=f"a face large enough in {with_face} of {frames} frames"
        )
    loud = float(numpy.percentile(voice, 95))
    speech = int(((voice > loud - SPEECH_RANGE_DB) & (voice > SPEECH_FLOOR_DBFS)).sum())
    if speech < MIN_SPEECH_SECONDS * track.fps:
        return verdict(NO_VERDICT, None, None, reason=f"too little speech ({speech / track.fps:.1f} s)")
    spread = float(numpy.nanpercentile(mouth, 95) - numpy.nanpercentile(mouth, 5))
    if spread < MIN_MOUTH_SPREAD:
        return verdict(NO_VERDICT, None, None, reason="the mouth does not move")
    window = round(DETREND_SECONDS * track.fps)
    voice = _detrended(numpy.maximum(voice, loud - LOUDNESS_RANGE_DB), window)
    mouth = _detrended(mouth, window)
    reach = min(MAX_LAG_FRAMES, frames // 4)
    lags = range(-reach, reach + 1)
    found = _correlations(mouth, voice, lags)
    best = int(numpy.argmax(found))
    confidence = round(found[best] - float(numpy.median(found)), 3)
    offset = lags[best]
    if confidence < MIN_CONFIDENCE:
        return verdict(NO_VERDICT, offset, confidence, reason="no lag matches the voice clearly")
    return verdict(IN_SYNC if abs(offset) <= max_offset_frames else OUT_OF_SYNC, offset, confidence)


@dataclass(frozen=True, slots=True)
class ChunkWindow:
    """A stretch of the track judged on its own: a lip-sync chunk's name, first frame and frame count."""

    name: str
    first: int
    frames: int


def judge(
    track: SyncTrack, chunks: Sequence[ChunkWindow], *, max_offset_frames: int, unit: str = "chunk"
) -> tuple[SyncEstimate, list[SyncEstimate]]:
    """The whole track's estimate and each chunk's (none when the track is one piece). The whole is
    ``out_of_sync`` when any chunk is, whatever the whole's own lag says: a chunk off by 8 frames among
    good ones is a bad video."""
    whole = estimate(track, max_offset_frames=max_offset_frames)
    if len(chunks) < 2:
        return whole, []
    parts = [
        estimate(
            track.window(chunk.first, chunk.frames),
            max_offset_frames=max_offset_frames,
            chunk=chunk.name,
            start_seconds=chunk.first / track.fps,
        )
        for chunk in chunks
    ]
    worst = next((part for part in parts if part.verdict == OUT_OF_SYNC), None)
    if worst is not None and whole.verdict != OUT_OF_SYNC:
        whole = dataclasses.replace(
            whole, verdict=OUT_OF_SYNC, reason=f"{unit} {worst.chunk} is {worst.offset_frames:+d} frames off"
        )
    return whole, parts


def unchecked(reason: str) -> SyncData:
    """The record of a video the check did not judge: ``no_verdict``, and why."""
    return {"verdict": NO_VERDICT, "offset_frames": None, "confidence": None, "reason": reason}


def blank(fps: int) -> SyncTrack:
    """A track with no frames (a chunk that was not measured): ``joined`` fills its frames."""
    return SyncTrack(fps, (), ())


def joined(tracks: Sequence[SyncTrack], frames: Sequence[int]) -> SyncTrack:
    """The chunks' tracks one after the other, each cut or filled (faceless, silent) to its ``frames``, so
    frame n of the whole is frame n of the joined video."""
    mouth: list[float | None] = []
    voice: list[float] = []
    for track, count in zip(tracks, frames, strict=True):
        mouth += [*track.mouth[:count], *[None] * (count - len(track.mouth[:count]))]
        voice += [*track.loudness[:count], *[SILENT_DBFS] * (count - len(track.loudness[:count]))]
    return SyncTrack(tracks[0].fps if tracks else 25, tuple(mouth), tuple(voice))


def describe(record: SyncData) -> str:
    """One line on an out-of-sync record: where (the first chunk or segment out of sync, else the whole),
    by how many frames which way, the tolerance and the confidence."""
    worst = next((c for c in record.get("chunks", []) if c["verdict"] == OUT_OF_SYNC), record)
    span = f"{worst.get('start_seconds', 0.0):.2f}-{worst.get('end_seconds', 0.0):.2f} s"
    where = f"{record.get('unit', 'chunk')} {worst['chunk']} ({span})" if worst.get("chunk") else span
    offset = int(worst["offset_frames"] or 0)
    way = "lags behind" if offset > 0 else "runs ahead of"
    return (
        f"lip-sync out of sync at {where}: the picture {way} the voice by {abs(offset)} frames "
        f"(at most {record.get('max_offset_frames', '?')} allowed; confidence {worst['confidence']})"
    )


def summary(record: SyncData) -> str:
    """The verdict in a few words, for ``va status``: ``sync: in sync (+1 frames, confidence 0.62)``."""
    if record.get("verdict") == NO_VERDICT:
        return f"sync: no verdict ({record.get('reason', '')})"
    worst = next((c for c in record.get("chunks", []) if c["verdict"] == OUT_OF_SYNC), record)
    where = f" in {record.get('unit', 'chunk')} {worst['chunk']}" if worst.get("chunk") else ""
    words = str(record["verdict"]).replace("_", " ")
    offset = int(worst["offset_frames"] or 0)
    return f"sync: {words}{where} ({offset:+d} frames, confidence {worst['confidence']})"
