"""Results of checks of files (a probe, a face search, a tool's version), kept by the file's identity.

A result is kept only while the file is the same file: the same resolved path, size, modification time,
change time and inode. A changed file has another identity, so it is checked anew, never answered with
what its old content gave (a stale duration or face box would make a wrong video that exits 0). Only
successful results are kept: a check that fails is made again, and says why again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypedDict, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityData(TypedDict):
    """A file identity as JSON data (``FileIdentity.as_dict``)."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What makes a file the same file for a check: where it is and its ``stat`` figures."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    def as_dict(self) -> IdentityData:
        """The identity as JSON data."""
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "ctime_ns": self.ctime_ns,
            "inode": self.inode,
        }

    @classmethod
    def from_dict(cls, data: IdentityData) -> FileIdentity:
        """An identity from ``as_dict``'s data: a field missing is a ``KeyError``, mistyped ``TypeError``."""
        path, numbers = data["path"], [data[key] for key in ("size", "mtime_ns", "ctime_ns", "inode")]
        if not isinstance(path, str) or not all(type(number) is int for number in numbers):
            raise TypeError(f"not a file identity: {data!r}")
        return cls(path, *numbers)


def identity_of(path: Path | str) -> FileIdentity:
    """The identity of the file at ``path`` now, links followed; ``OSError`` when it is not there."""
    resolved = os.path.realpath(path)
    info = os.stat(resolved)
    return FileIdentity(resolved, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


class Memo(Generic[K, V]):
    """Results by key, the oldest dropped beyond ``limit``. Safe to use from several threads: one that asks
    for a key another is making waits for that result (a batch's jobs that share a voice, checked side by
    side, probe it once)."""

    def __init__(self, limit: int = 4096) -> None:
        self._values: dict[K, V] = {}
        self._limit = limit
        self._lock = threading.Lock()
        self._making: dict[K, threading.Lock] = {}

    def made(self, key: K, make: Callable[[], V]) -> V:
        """The result kept for ``key``, else ``make()``'s, kept when it returns (not when it raises: a
        thread that waited for it then makes it itself)."""
        found = self._values.get(key)
        if found is not None:
            return found
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:
            found = self._values.get(key)
            if found is not None:
                return found
            try:
                value = make()
                self.keep(key, value)
            finally:
                with self._lock:
                    self._making.pop(key, None)
            return value

    def get(self, key: K) -> V | None:
        """The result kept for ``key``, None when there is none."""
        return self._values.get(key)

    def keep(self, key: K, value: V) -> None:
        """Keep ``value`` as the result for ``key``."""
        with self._lock:
            self._values.pop(key, None)
            self._values[key] = value
            while len(self._values) > self._limit:
                del self._values[next(iter(self._values))]

    def items(self) -> Iterator[tuple[K, V]]:
        """Every kept key and result, oldest first."""
        with self._lock:
            kept = list(self._values.items())
        return iter(kept)

    def clear(self) -> None:
        """Forget every result."""
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
