"""va/locks.py: a file lock excludes every other holder, in this process or another, and the kernel gives
it back when its process ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from va.errors import ExitCode, VaError
from va.locks import Flock, is_held, locked
from va.runner import workdir_lock
from va.workdir import Workdir


def test_a_lock_excludes_another_object_until_released(tmp_path: Path) -> None:
    path = tmp_path / "pool" / "slot.lock"  # its folder is made with it
    first, second = Flock(path), Flock(path)
    assert first.try_acquire() and first.is_locked
    assert not second.try_acquire() and not second.is_locked  # even in the same process and thread
    first.release()
    first.release()  # again: nothing
    assert second.try_acquire()
    second.release()


def test_a_lock_of_another_process_is_waited_for_then_given_back_when_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    hold = f"import pathlib, va.locks; assert va.locks.Flock(pathlib.Path({str(path)!r})).try_acquire()"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"{hold}; print('held', flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with (
            pytest.raises(TimeoutError, match=r"held by another process for 0\.05 s"),
            locked(path, timeout=0.05),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with locked(path, timeout=5):
        assert not Flock(path).try_acquire()
    free = Flock(path)
    assert free.try_acquire()
    free.release()


def test_a_workdir_held_by_a_run_refuses_a_second_and_is_seen_held(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path / "run")
    assert not is_held(workdir.run_lock)  # no file yet: held by none, and none made
    assert not workdir.run_lock.exists()
    with workdir_lock(workdir):
        assert is_held(workdir.run_lock)
        with pytest.raises(VaError) as refused, workdir_lock(workdir):
            pytest.fail("a second run took a held workdir")
        assert refused.value.code == ExitCode.OUTPUT_EXISTS
        assert "is in use by another va run" in str(refused.value)
    assert not is_held(workdir.run_lock)
