"""va/lipsync/cuts.py and the plan's chunks: where a long padded audio is cut (inside pauses, on frame
boundaries, never longer than the provider takes) and the frame counts a provider's quantum allows."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import CliRunner, Media
from tests.lipsync.conftest import UseProviders
from tests.lipsync.fakes import voice_with_pauses
from va import media
from va.errors import ExitCode, VaError
from va.job import load_job
from va.lipsync.cuts import Cut, Quantum, plan_cuts, quantum_of, shortest_chunk
from va.plan import plan_job


def test_a_cut_goes_into_the_pause_nearest_the_limit() -> None:
    # 100 frames, at most 40 a chunk, search 10 back: pauses at 28-31 (too early), 33-35 and 70-90.
    cuts = plan_cuts(100, limit=40, search=10, silent=[(28, 31), (33, 35), (70, 90)])
    assert cuts == [Cut(0, 34, "silence"), Cut(34, 38, "silence"), Cut(72, 28, "end")]
    # The second chunk reaches to frame 74: the long pause is cut in the middle of its part within reach.


def test_with_no_pause_within_the_search_the_cut_goes_into_speech_at_the_limit() -> None:
    assert plan_cuts(100, limit=40, search=3, silent=[(10, 20)]) == [
        Cut(0, 40, "speech"),
        Cut(40, 40, "speech"),
        Cut(80, 20, "end"),
    ]
    assert plan_cuts(40, limit=40, search=3, silent=[]) == [Cut(0, 40, "end")]


def test_a_search_longer_than_the_limit_reaches_back_only_to_the_shortest_chunk() -> None:
    # 200 frames, at most 50 a chunk, a search of 75: leading silence 0-8, pauses 110-125 and 180-190.
    silent = [(0, 8), (110, 125), (180, 190)]
    # Any chunk length allowed (as the segments' planner, which searches a third of the limit): the
    # search reaches past each chunk's start and cuts the pauses into chunks of a few frames.
    tiny = [4, 2, 1, 1, 50, 50, 9, 4, 2, 1, 1, 50, 25]
    assert [c.frames for c in plan_cuts(200, limit=50, search=75, silent=silent)] == tiny
    cuts = plan_cuts(200, limit=50, search=75, silent=silent, shortest=25)
    assert cuts == [
        Cut(0, 50, "speech"),
        Cut(50, 50, "speech"),
        Cut(100, 25, "silence"),
        Cut(125, 50, "speech"),
        Cut(175, 25, "end"),
    ]


def test_the_last_chunk_is_no_shorter_than_the_shortest_either() -> None:
    assert [c.frames for c in plan_cuts(101, limit=50, search=3, silent=[], shortest=25)] == [50, 26, 25]
    # Frames left for no two chunks of the shortest length: the last two share them.
    assert [c.frames for c in plan_cuts(61, limit=50, search=3, silent=[], shortest=40)] == [31, 30]
    assert plan_cuts(50, limit=50, search=3, silent=[], shortest=40) == [Cut(0, 50, "end")]


def test_the_shortest_chunk_is_a_quarter_of_the_limit_and_one_the_quantum_takes() -> None:
    assert shortest_chunk(97, Quantum(1, 4, 1)) == 25
    assert shortest_chunk(49, Quantum(1, 4, 1)) == 13
    assert shortest_chunk(12, Quantum(1, 4, 1)) == 5  # 3 frames: a 4n+1 model takes 1 or 5
    assert shortest_chunk(48, Quantum(16)) == 16  # less than one window costs a window
    assert shortest_chunk(1, Quantum()) == 1


@pytest.mark.parametrize(
    ("quantum", "frames", "padded", "largest_of_500"),
    [
        (Quantum(16), 300, 304, 496),
        (Quantum(16), 288, 288, 496),
        (Quantum(1, 4, 1), 300, 301, 497),
        (Quantum(1, 4, 1), 301, 301, 497),
        (Quantum(), 300, 300, 500),
    ],
)
def test_a_quantum_pads_up_and_bounds_the_chunks(
    quantum: Quantum, frames: int, padded: int, largest_of_500: int
) -> None:
    assert quantum.pad(frames) == padded
    assert quantum.largest(500) == largest_of_500


def test_a_quantum_no_count_satisfies_is_a_validation_error() -> None:
    assert quantum_of({"frame_form": "4n+1"}, "provider p") == Quantum(1, 4, 1)
    with pytest.raises(VaError) as raised:
        quantum_of({"frame_multiple": 16, "frame_form": "4n+1"}, "provider p")
    assert raised.value.code == ExitCode.VALIDATION_FAILED
    assert raised.value.message == "provider p: no frame count is a multiple of 16 and of the form 4n+1"


def test_the_plan_cuts_a_long_voice_at_its_pauses_into_chunks_the_provider_takes(
    files: Media, use_providers: UseProviders
) -> None:
    voice_with_pauses(files, "long.wav", 47.0)
    use_providers(p={"type": "audiogram", "input": {"max_seconds": 12, "frame_multiple": 16}})
    lipsync = {"enable": True, "provider": "p", "cut_search_seconds": 2}
    job = load_job(
        files.job(
            input={"audio": "long.wav", "start": "start.png"},
            lipsync=lipsync,
            buffer={"pre_seconds": 0.3, "post_seconds": 0.5},
        )
    )
    stage = plan_job(job).lipsync
    assert stage is not None and stage.chunked and stage.fps == 25 and stage.frames == 1195  # 47.8 s
    chunks = stage.chunks
    assert [c.first for c in chunks] == [0, *(c.first + c.frames for c in chunks[:-1])]
    assert sum(c.frames for c in chunks) == stage.frames
    # At most 12 s of input each, padded to whole windows of 16 frames included.
    assert all(c.input_frames % 16 == 0 and c.frames <= c.input_frames <= 300 for c in chunks)
    assert all(c.input_seconds == c.input_frames / 25 for c in chunks)
    # Every cut lies on a frame boundary, inside a pause of the voice (shifted by the 0.3 s before it).
    pauses = media.detect_silences(files.root / "long.wav", noise_db=-35, min_seconds=0.25)
    for chunk in chunks[:-1]:
        assert chunk.cut == "silence" and round(chunk.end_seconds * 25, 6) == chunk.first + chunk.frames
        assert any(p.start_seconds + 0.3 <= chunk.end_seconds <= p.end_seconds + 0.3 for p in pauses)
    assert chunks[-1].end_seconds == 47.8 and chunks[-1].cut == "end"


def test_a_voice_within_the_limit_is_one_chunk_and_a_chunk_seconds_below_it_cuts(
    files: Media, use_providers: UseProviders
) -> None:
    use_providers(p={"type": "audiogram", "input": {"max_seconds": 20, "frame_form": "4n+1"}})
    whole = plan_job(load_job(files.job(lipsync={"enable": True, "provider": "p"}))).lipsync
    assert whole is not None and not whole.chunked
    assert (whole.chunks[0].frames, whole.chunks[0].input_frames, whole.chunks[0].input_seconds) == (
        50,
        53,
        2.12,
    )
    job = files.job(lipsync={"enable": True, "provider": "p", "chunk_seconds": 0.8})
    cut = plan_job(load_job(job)).lipsync
    assert cut is not None and [c.frames for c in cut.chunks] == [17, 17, 16]  # the 2 s tone has no pause
    assert all(c.input_frames % 4 == 1 and c.input_frames <= 20 for c in cut.chunks)


def test_va_validate_names_the_chunks(files: Media, use_providers: UseProviders, va_cli: CliRunner) -> None:
    use_providers(p={"type": "audiogram", "input": {"max_seconds": 0.8}})
    result = va_cli("validate", files.job(lipsync={"enable": True, "provider": "p"}))
    assert result.code == 0, result.err
    assert "  lip-sync  p (audiogram) in 3 chunks of up to 0.80 s\n" in result.out


def test_a_limit_no_count_of_the_quantum_fits_in_is_refused(
    files: Media, use_providers: UseProviders, va_cli: CliRunner
) -> None:
    use_providers(p={"type": "audiogram", "input": {"max_seconds": 0.5, "frame_multiple": 16}})
    result = va_cli("validate", files.job(lipsync={"enable": True, "provider": "p"}))
    assert result.code == ExitCode.VALIDATION_FAILED and "Traceback" not in result.err
    assert "chunks of at most 0.5 s hold no frame count provider p takes at 25 fps" in result.err


def test_a_plan_keeps_the_chunks_an_earlier_plan_cut_of_the_same_audio(
    files: Media, use_providers: UseProviders
) -> None:
    use_providers(p={"type": "audiogram", "input": {"max_seconds": 0.8}})
    job = load_job(files.job(lipsync={"enable": True, "provider": "p"}))
    first = plan_job(job)
    assert first.lipsync is not None and [c.frames for c in first.lipsync.chunks] == [20, 20, 10]
    # As an earlier version of va cut them: a resumed run keeps them, so it makes only the missing chunks.
    earlier_cuts = (
        dataclasses.replace(first.lipsync.chunks[0], frames=18, end_seconds=0.72),
        dataclasses.replace(first.lipsync.chunks[1], first=18, frames=22, start_seconds=0.72),
        first.lipsync.chunks[2],
    )
    earlier = dataclasses.replace(first, lipsync=dataclasses.replace(first.lipsync, chunks=earlier_cuts))
    kept = plan_job(job, previous=earlier).lipsync
    assert kept is not None and kept.chunks == earlier_cuts
    # Another cut setting, or another voice, cuts anew.
    shorter = load_job(files.job(lipsync={"enable": True, "provider": "p", "chunk_seconds": 0.6}))
    recut = plan_job(shorter, previous=earlier).lipsync
    assert recut is not None and [c.frames for c in recut.chunks] == [15, 15, 15, 5]
    files.tone("voice.wav", 2.2)
    longer = plan_job(
        load_job(files.job(lipsync={"enable": True, "provider": "p"})), previous=earlier
    ).lipsync
    assert longer is not None and [c.frames for c in longer.chunks] == [20, 20, 15]


def test_a_limit_below_the_search_cuts_no_needlessly_short_chunk(
    files: Media, use_providers: UseProviders
) -> None:
    # 8 s of voice with a pause every 5 s and 0.3 s of silence before it, in chunks of at most 2 s: the
    # search (3 s) reaches back past the chunk's start, yet no cut goes into the leading silence or
    # splits a pause into chunks of a few frames (it cut 12, of 4, 2 and 1 frames among them).
    voice_with_pauses(files, "long.wav", 8.0)
    use_providers(p={"type": "audiogram", "input": {"max_seconds": 2, "frame_form": "4n+1"}})
    job = files.job(
        input={"audio": "long.wav", "start": "start.png"},
        lipsync={"enable": True, "provider": "p"},
        buffer={"pre_seconds": 0.3, "post_seconds": 0.5},
    )
    stage = plan_job(load_job(job)).lipsync
    assert stage is not None and stage.frames == 220
    frames = [c.frames for c in stage.chunks]
    assert sum(frames) == 220 and len(frames) <= 5
    assert all(25 <= count <= 49 for count in frames)  # half the limit (2 s: 49 frames of the form 4n+1)
    # A chunk ends short of the limit only in a pause.
    assert all(c.cut == "silence" for c in stage.chunks[:-1] if c.frames < 49)
    assert all(c.input_frames % 4 == 1 and c.input_frames <= 50 for c in stage.chunks)
