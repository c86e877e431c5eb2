"""va/atomic.py: a file appears whole under its name, or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from va.atomic import (
    SCRATCH_PREFIX,
    copy_file_atomic,
    partial_file,
    place_file,
    scratch_folder,
    stream_to_file,
)
from va.errors import ExitCode, VaError


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_partial_file_is_renamed_into_place_when_its_writer_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "out" / "final.mp4"
    with partial_file(target) as partial:
        assert partial.name == "final.mp4" and partial.parent.name.startswith(SCRATCH_PREFIX)
        partial.write_bytes(b"whole")
        assert not target.exists()  # nothing under the final name while it is written
    assert target.read_bytes() == b"whole"
    assert _leftovers(target.parent) == []


def test_a_failed_writer_leaves_neither_its_partial_nor_a_target(tmp_path: Path) -> None:
    target = tmp_path / "final.mp4"
    with pytest.raises(RuntimeError), partial_file(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("ffmpeg failed")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_a_failed_writer_keeps_the_file_that_was_there(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"before")
    with pytest.raises(RuntimeError), partial_file(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("cut off")
    assert target.read_bytes() == b"before"


def test_no_clobber_keeps_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "final.mp4"
    with pytest.raises(VaError) as caught, partial_file(target, no_clobber=True) as partial:
        partial.write_bytes(b"ours")
        target.write_bytes(b"the user's")
    assert caught.value.code == ExitCode.OUTPUT_EXISTS
    assert target.read_bytes() == b"the user's"
    assert _leftovers(tmp_path) == []


def test_a_stream_cut_off_leaves_no_file(tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"first block"
        raise ConnectionError("reset")

    target = tmp_path / "result.mp4"
    with pytest.raises(ConnectionError):
        stream_to_file(target, broken())
    assert not target.exists() and _leftovers(tmp_path) == []
    stream_to_file(target, iter([b"a", b"b"]))
    assert target.read_bytes() == b"ab"


def test_streams_sharing_a_scratch_folder_each_appear_whole_and_the_folder_goes(tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"first block"
        raise ConnectionError("reset")

    frames = [tmp_path / f"{n:06d}.png" for n in range(1, 4)]
    with scratch_folder(frames[0]) as scratch:
        stream_to_file(frames[0], iter([b"one"]), scratch=scratch)
        with pytest.raises(ConnectionError):
            stream_to_file(frames[1], broken(), scratch=scratch)
        stream_to_file(frames[2], iter([b"th", b"ree"]), scratch=scratch)
        assert not frames[1].exists()  # the broken one is nowhere under its name
    assert [f.read_bytes() if f.exists() else None for f in frames] == [b"one", None, b"three"]
    assert _leftovers(tmp_path) == []


def test_copy_and_place_give_the_same_content_under_the_new_name(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"content")
    copy_file_atomic(source, tmp_path / "copy" / "a.bin")
    place_file(source, tmp_path / "placed" / "b.bin")
    assert (tmp_path / "copy" / "a.bin").read_bytes() == b"content"
    assert (tmp_path / "placed" / "b.bin").read_bytes() == b"content"
    assert (tmp_path / "placed" / "b.bin").stat().st_ino == source.stat().st_ino  # a second name
