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
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from va import media
from va.errors import ExitCode, VaError
from va.job import SyncCheckSettings
from va.lipsync.providers import Provider

#: The landmark model inside ``face-recognition-models`` (the iBUG 300-W 68-point layout).
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
PACKAGES = "dlib-bin and face-recognition-models (pip install dlib-bin face-recognition-models)"
#: Frames are measured no larger than this (px, longer side): the detector's time grows with the area, and
#: a face of a talking-head video keeps well over its 80 px minimum at that size.
ANALYSIS_SIDE = 640
#: The face is looked for again every this many frames (detecting costs ~15 times as much as fitting the
#: landmarks); in the frames between, the box found last follows the nose's landmarks.
DETECT_EVERY = 25
#: The landmarks of the nose's bridge (27-30): they move with the head, not with the mouth.
NOSE = (27, 28, 29, 30)
#: The lags tried, in frames either way: SyncNet's evaluation searches the same +-15.
MAX_LAG_FRAMES = 15
#: Audio samples a frame's loudness is measured over (the sample rate follows: 400 x fps).
SAMPLES_PER_FRAME = 400
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
#: A face whose outer eye corners are closer than this (px, at ``ANALYSIS_SIDE``) counts as none: on a
#: smaller face a pixel of the landmarks' jitter is more than a tenth of the lips' gap.
MIN_EYES_PIXELS = 30.0
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


#: The settings of a stage planned before the check existed: not checked.
UNCHECKED = SyncSettings(enabled=False, reason="not checked")


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

    def as_dict(self) -> dict[str, Any]:
        """The track as JSON data (``lipsync/sync.json``: what the report plots)."""
        rounded = [None if value is None else round(value, 4) for value in self.mouth]
        return {"fps": self.fps, "mouth": rounded, "loudness": [round(v, 2) for v in self.loudness]}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SyncTrack:
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

    def as_dict(self) -> dict[str, Any]:
        """The estimate as JSON data (the manifest's ``phases.lipsync.sync``, a chunk's entry in it)."""
        data = dataclasses.asdict(self)
        if not self.chunk:
            del data["chunk"]
        if not self.reason:
            del data["reason"]
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SyncEstimate:
        """An estimate read back from ``as_dict``'s data."""
        fields = {field.name for field in dataclasses.fields(SyncEstimate)}
        return SyncEstimate(**{key: value for key, value in data.items() if key in fields})


def _import_dlib() -> Any:
    try:
        import dlib  # noqa: PLC0415 - only the sync check needs dlib
    except ImportError as exc:
        raise VaError(ExitCode.DEPENDENCY_MISSING, f"the lip-sync check needs {PACKAGES} ({exc})") from exc
    return dlib


def landmark_model() -> Path:
    """The 68-point model's file inside ``face-recognition-models``, found without importing the package
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
def _models() -> tuple[Any, Any]:
    """dlib's face detector and the 68-point landmark predictor, loaded once a process."""
    dlib = _import_dlib()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmark_model()))


def _largest_face(detector: Any, pixels: Any) -> Any:
    """The largest face dlib's detector finds (looking at twice the size when it finds none), or None."""
    for upsample in (0, 1):
        found = detector(pixels, upsample)
        if len(found) > 0:
            return max(found, key=lambda box: box.area())
    return None


def _mouth_opening(shape: Any) -> float | None:
    """The inner lips' gap (points 61-67, 62-66, 63-65 of the 68) over the outer eye corners' distance
    (36-45), so the value does not change with the face's size in the picture."""

    def point(index: int) -> tuple[float, float]:
        part = shape.part(index)
        return float(part.x), float(part.y)

    def distance(a: int, b: int) -> float:
        (ax, ay), (bx, by) = point(a), point(b)
        return float(((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5)

    eyes = distance(36, 45)
    if eyes < MIN_EYES_PIXELS:
        return None
    return (distance(61, 67) + distance(62, 66) + distance(63, 65)) / 3.0 / eyes


def mouth_openings(video: Path) -> Iterator[float | None]:
    """The mouth's opening in each frame of ``video`` (None where no face is found), frames streamed."""
    import numpy  # noqa: PLC0415 - OpenCV's and dlib's dependency, needed only with them

    dlib = _import_dlib()
    detector, predictor = _models()
    found = box = anchor = None
    with closing(media.grey_frames(video, longest_side=ANALYSIS_SIDE)) as frames:
        for number, frame in enumerate(frames):
            pixels = numpy.frombuffer(frame.pixels, dtype=numpy.uint8).reshape(frame.height, frame.width)
            if number % DETECT_EVERY == 0:
                found = box = _largest_face(detector, pixels)
                anchor = None
            if found is None:
                yield None
                continue
            shape = predictor(pixels, box)
            nose = _centre(shape, NOSE)
            anchor = anchor or nose
            box = dlib.translate_rect(
                found, dlib.point(round(nose[0] - anchor[0]), round(nose[1] - anchor[1]))
            )
            yield _mouth_opening(shape)


def _centre(shape: Any, points: tuple[int, ...]) -> tuple[float, float]:
    """The mean position of the landmarks ``points``."""
    parts = [shape.part(index) for index in points]
    return sum(p.x for p in parts) / len(parts), sum(p.y for p in parts) / len(parts)


def loudness(audio: Path, fps: int) -> Iterator[float]:
    """The loudness (dBFS, RMS) of ``audio`` in each frame's time at ``fps``, streamed."""
    import numpy  # noqa: PLC0415

    blocks = media.pcm_blocks(audio, sample_rate=SAMPLES_PER_FRAME * fps, samples=SAMPLES_PER_FRAME)
    with closing(blocks):
        for block in blocks:
            samples = numpy.frombuffer(block, dtype="<i2").astype(numpy.float64) / 32768.0
            rms = float(numpy.sqrt(numpy.mean(samples * samples))) if samples.size else 0.0
            yield 20.0 * float(numpy.log10(max(rms, 1e-6)))


def measure(video: Path, audio: Path, fps: int) -> SyncTrack:
    """The mouth of ``video`` and the loudness of ``audio`` (from the same start), frame by frame."""
    return SyncTrack(fps, tuple(mouth_openings(video)), tuple(loudness(audio, fps)))


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
    track: SyncTrack, chunks: Sequence[ChunkWindow], *, max_offset_frames: int
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
            whole, verdict=OUT_OF_SYNC, reason=f"chunk {worst.chunk} is {worst.offset_frames:+d} frames off"
        )
    return whole, parts


def unchecked(reason: str) -> dict[str, Any]:
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


def describe(record: dict[str, Any]) -> str:
    """One line on an out-of-sync record: where (the first chunk out of sync, else the whole), by how
    many frames which way, the tolerance and the confidence."""
    worst = next((c for c in record.get("chunks", []) if c["verdict"] == OUT_OF_SYNC), record)
    span = f"{worst['start_seconds']:.2f}-{worst['end_seconds']:.2f} s"
    where = f"chunk {worst['chunk']} ({span})" if worst.get("chunk") else span
    offset = int(worst["offset_frames"])
    way = "lags behind" if offset > 0 else "runs ahead of"
    return (
        f"lip-sync out of sync at {where}: the picture {way} the voice by {abs(offset)} frames "
        f"(at most {record.get('max_offset_frames', '?')} allowed; confidence {worst['confidence']})"
    )


def summary(record: dict[str, Any]) -> str:
    """The verdict in a few words, for ``va status``: ``sync: in sync (+1 frames, confidence 0.62)``."""
    if record.get("verdict") == NO_VERDICT:
        return f"sync: no verdict ({record.get('reason', '')})"
    worst = next((c for c in record.get("chunks", []) if c["verdict"] == OUT_OF_SYNC), record)
    where = f" in chunk {worst['chunk']}" if worst.get("chunk") else ""
    words = str(record["verdict"]).replace("_", " ")
    return f"sync: {words}{where} ({worst['offset_frames']:+d} frames, confidence {worst['confidence']})"
