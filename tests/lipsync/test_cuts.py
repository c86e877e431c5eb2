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
from va.lipsync.cuts import Cut, Quantum, plan_cuts, quantum_of
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
