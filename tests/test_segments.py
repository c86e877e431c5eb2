"""va/segments.py: a long voice cut into the clips a model makes (its frame form, its most frames, head
frames that repeat the previous clip), the seams in pauses, the kept frames adding up to the target."""

from __future__ import annotations

import pytest

from va.errors import ExitCode, VaError
from va.lipsync.cuts import plan_cuts
from va.segments import SegmentContract, SegmentCut, cut_segments, longest_new

#: InfiniteTalk's contract at a third of its length: 4n+1 frames, at most 33, nine of context and head.
CHAINED = SegmentContract(fps=25, max_frames=33, frame_form="4n+1", context_frames=9, head_frames=9)


def test_a_12_s_voice_becomes_4n_plus_1_clips_whose_new_frames_add_up_to_the_target() -> None:
    segments = cut_segments(300, CHAINED, "talk", silent=[], search=0)
    assert longest_new(CHAINED, "talk") == 24  # 33 frames, 9 of them the head
    assert [s.frames for s in segments] == [33] * 12 + [21]
    assert all(s.frames % 4 == 1 and s.frames <= 33 for s in segments)
    assert sum(s.kept for s in segments) == 300
    assert [s.first for s in segments] == [24 * i for i in range(13)]
    assert segments[-1] == SegmentCut(288, 21, 12, "end")


def test_the_last_clip_makes_more_than_the_video_keeps_when_the_form_cannot_end_on_the_target() -> None:
    # 301 frames: after 12 clips of 24 new frames, 13 are left; 13 + 9 is no 4n+1, 16 + 9 is.
    last = cut_segments(301, CHAINED, "talk", silent=[], search=0)[-1]
    assert (last.first, last.frames, last.kept) == (288, 25, 13)


def test_seams_go_into_pauses_on_frames_the_form_allows() -> None:
    # A pause over frame boundaries 15-22: the seam is a multiple of 4 new frames (4n+1 with 9 head).
    segments = cut_segments(60, CHAINED, "talk", silent=[(15, 22)], search=12)
    assert segments[0] == SegmentCut(0, 29, 20, "silence")  # 16 or 20 fit; 20 is nearest the middle
    assert sum(s.kept for s in segments) == 60
    assert all(s.frames % 4 == 1 for s in segments)


def test_without_head_frames_each_clip_is_all_new_frames() -> None:
    independent = SegmentContract(fps=25, max_frames=81, frame_form="4n+1")
    segments = cut_segments(200, independent, "s2v", silent=[], search=0)
    assert [s.frames for s in segments] == [81, 81, 41]
    assert [s.kept for s in segments] == [81, 81, 38]


def test_a_shorter_limit_is_bounded_by_the_form() -> None:
    segments = cut_segments(100, CHAINED, "talk", silent=[], search=0, limit=18)
    assert {s.frames for s in segments[:-1]} == {25}  # 16 new frames: the most of at most 18 that fit


def test_a_contract_that_holds_no_new_frame_is_a_validation_error() -> None:
    with pytest.raises(VaError) as raised:
        longest_new(SegmentContract(fps=25, max_frames=9, frame_form="4n+1", head_frames=9), "tight")
    assert raised.value.code == ExitCode.VALIDATION_FAILED
    assert raised.value.message == (
        "workflow tight: segments of at most 9 frames of the form 4n+1 with 9 head frames hold no new frame"
    )
    with pytest.raises(VaError, match="no frame count is a multiple of 2 and of the form 4n\\+1"):
        longest_new(SegmentContract(fps=25, max_frames=81, frame_form="4n+1", frame_multiple=2), "odd")


def test_plan_cuts_without_fits_cuts_as_before() -> None:
    assert plan_cuts(100, limit=40, search=10, silent=[(70, 90)]) == plan_cuts(
        100, limit=40, search=10, silent=[(70, 90)], fits=lambda _: True
    )
