"""File locks that the kernel gives back when their process ends (``flock``): a slot of the ComfyUI
pool, a workdir's record, the registry of runs.

An ``open`` and a ``flock`` (also the run lock of a workdir and the assets' lock), where the filelock
package took 0.03 s of CPU to import in each of a video's five rule processes, and ten times as long a
try. Each lock object opens the file anew: two objects (two threads, or one thread twice) never
share a lock, and a lock of one process never reaches another."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: How often a waiting ``locked`` tries again.
POLL_SECONDS = 0.005


class Flock:
    """The exclusive lock of one file, held by the open file until released or its process ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def is_locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no one holds it (the file and its folder are made if missing: the one place a
        lock's folder is made); whether it was taken."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock back (again: nothing)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file releases its flock


def is_held(path: Path) -> bool:
    """Whether a process holds the lock of ``path``; a missing file is held by none, and is not made."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; opening a file that is there writes nothing
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold the lock of ``path`` while the block runs, waiting for it at most ``timeout`` seconds
    (``TimeoutError`` then, as filelock's ``Timeout`` was)."""
    lock = Flock(path)
    deadline = time.monotonic() + timeout
    while not lock.try_acquire():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: held by another process for {timeout:g} s")
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()
