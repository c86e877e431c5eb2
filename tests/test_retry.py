"""va/retry.py: the one retry policy (attempts, a budget in seconds from the first failure, full jitter)
and which failed requests may be sent again."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import requests
from urllib3.exceptions import ProtocolError

from tests.conftest import free_port
from va import retry
from va.retry import RetryPolicy, retrying, sent_nowhere


class Flaky(Exception):
    pass


def failing(times: int) -> tuple[list[float], Callable[[], str]]:
    calls: list[float] = []

    def call() -> str:
        calls.append(time.monotonic())
        if len(calls) <= times:
            raise Flaky(f"failure {len(calls)}")
        return "done"

    return calls, call


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the policy asks for, recorded instead of slept."""
    asked: list[float] = []
    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=time.monotonic, sleep=asked.append))
    return asked


def test_attempts_then_the_last_error(pauses: list[float]) -> None:
    calls, call = failing(10)
    told: list[tuple[int, str]] = []
    policy = retrying(
        RetryPolicy(3), Flaky, before_sleep=lambda n, pause, error: told.append((n, str(error)))
    )
    with pytest.raises(Flaky, match="failure 3"):
        policy(call)
    assert len(calls) == 3 and told == [(1, "failure 1"), (2, "failure 2")]
    # full jitter: the n-th pause is drawn from [0, 0.5 * 2**(n-1)]
    assert len(pauses) == 2 and 0 <= pauses[0] <= 0.5 and 0 <= pauses[1] <= 1.0


def test_success_after_failures(pauses: list[float]) -> None:
    calls, call = failing(2)
    assert retrying(RetryPolicy(3), Flaky)(call) == "done" and len(calls) == 3


def test_other_errors_are_not_retried(pauses: list[float]) -> None:
    def call() -> None:
        raise ValueError("not transient")

    with pytest.raises(ValueError, match="not transient"):
        retrying(RetryPolicy(5), Flaky)(call)
    assert pauses == []


def test_a_budget_in_seconds_goes_on_past_the_attempts() -> None:
    """One attempt by count, 0.3 s of budget with pauses of at most 20 ms: several more attempts, and
    none started after the budget ran out."""
    calls, call = failing(1000)
    with pytest.raises(Flaky):
        retrying(RetryPolicy(1, seconds=0.3, initial=0.01, cap=0.02), Flaky)(call)
    assert len(calls) > 3
    assert calls[-1] - calls[0] <= 0.3 + 0.1


def test_a_refused_connection_was_sent_nowhere_a_lost_answer_was() -> None:
    with pytest.raises(requests.ConnectionError) as refused:
        requests.post(f"http://127.0.0.1:{free_port()}/", timeout=5)
    assert sent_nowhere(refused.value)
    lost = requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError()))
    assert not sent_nowhere(lost)
    assert not sent_nowhere(requests.ReadTimeout("read timed out"))
