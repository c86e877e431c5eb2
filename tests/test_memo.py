"""va/memo.py: results kept by a file's identity, made once even when threads ask at the same time."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from va.memo import FileIdentity, Memo, identity_of


def test_threads_asking_for_one_key_wait_for_one_making() -> None:
    memo: Memo[str, int] = Memo()
    made: list[str] = []

    def make() -> int:
        made.append(threading.current_thread().name)
        time.sleep(0.2)  # long enough for every thread to ask while it is being made
        return 42

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: memo.made("voice.wav", make), range(8)))
    assert results == [42] * 8 and len(made) == 1


def test_a_failed_making_is_not_kept() -> None:
    memo: Memo[str, int] = Memo()

    def fail() -> int:
        raise ValueError("not decodable")

    for _ in range(2):
        with pytest.raises(ValueError, match="not decodable"):
            memo.made("noise.wav", fail)
    assert memo.get("noise.wav") is None and len(memo) == 0
    assert memo.made("noise.wav", lambda: 7) == 7


def test_the_oldest_results_are_dropped_beyond_the_limit() -> None:
    memo: Memo[int, int] = Memo(limit=3)
    for key in range(5):
        memo.keep(key, key * 10)
    assert [key for key, _ in memo.items()] == [2, 3, 4]


def test_a_file_is_known_by_its_resolved_path_and_stat(tmp_path: Path) -> None:
    voice = tmp_path / "voice.wav"
    voice.write_bytes(b"RIFF")
    (tmp_path / "link.wav").symlink_to(voice)
    identity = identity_of(tmp_path / "link.wav")
    assert identity == identity_of(voice) and identity.path == str(voice.resolve())
    assert FileIdentity.from_dict(identity.as_dict()) == identity
    os.utime(voice, ns=(0, identity.mtime_ns + 1))
    assert identity_of(voice) != identity
    with pytest.raises(TypeError):
        FileIdentity.from_dict({**identity.as_dict(), "size": "4"})
