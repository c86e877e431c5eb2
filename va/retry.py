"""The one retry policy of va (on tenacity): exponential backoff with full jitter, bounded by a number of
attempts and, optionally, by seconds since the first failure.

Who retries what: ComfyUI batches (``va.comfyui.stage``), lip-sync services and commands
(``va.lipsync.remote``, ``va.lipsync.command``), asset downloads (``va.assets``). A request that changes
something on the server (a POST that submits work) is retried only when it surely did not arrive
(``sent_nowhere``) or the server answered that it did not take it (``POST_RETRYABLE_STATUS``): a lost
answer is not a refusal, and a blind second POST would queue the work twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import tenacity

#: Statuses worth another attempt of a request that changes nothing (GET, HEAD, a resumable download).
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Statuses that say a POST was not taken: the request timed out arriving (408), was throttled (429),
#: failed in the server before it was accepted (500) or the server is not serving (503). A gateway's
#: 502 or 504 may follow a request the service did take, so those are not among them.
POST_RETRYABLE_STATUS = frozenset({408, 429, 500, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try: ``attempts`` in all at least, and beyond them more until
    ``seconds`` have passed since the first failure; the pause before attempt n+1 is uniform in
    [0, min(cap, initial * 2**(n-1))] (full jitter), the last one shortened to what the budget has left."""

    attempts: int
    seconds: float = 0.0
    initial: float = 0.5
    cap: float = 30.0


class _Budget:
    """tenacity's stop and wait of one ``RetryPolicy``, measuring the seconds from the first failure."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.first_failure: float | None = None

    def left(self, state: tenacity.RetryCallState) -> float:
        now = state.outcome_timestamp or time.monotonic()
        self.first_failure = self.first_failure if self.first_failure is not None else now
        return self.policy.seconds - (now - self.first_failure)

    def stop(self, state: tenacity.RetryCallState) -> bool:
        return state.attempt_number >= self.policy.attempts and self.left(state) <= 0

    def wait(self, state: tenacity.RetryCallState) -> float:
        window = min(self.policy.cap, self.policy.initial * 2 ** (state.attempt_number - 1))
        pause = random.uniform(0, window)
        if state.attempt_number >= self.policy.attempts:
            pause = min(pause, max(0.0, self.left(state)))
        return pause


def retrying(
    policy: RetryPolicy,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    *,
    before_sleep: Callable[[int, float, BaseException], None] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` of ``policy`` that retries the exceptions ``retry_on`` and re-raises the
    last one when the policy gives up; ``before_sleep(attempt, pause, error)`` is told of each wait;
    ``sleep`` waits the pauses (a caller that must be able to stop waiting passes its own).

    Use: ``for attempt in retrying(...): with attempt: ...`` or ``retrying(...)(function)``."""
    budget = _Budget(policy)

    def tell(state: tenacity.RetryCallState) -> None:
        if before_sleep is not None and state.outcome is not None and state.next_action is not None:
            error = state.outcome.exception()
            if error is not None:
                before_sleep(state.attempt_number, state.next_action.sleep, error)

    return tenacity.Retrying(
        stop=budget.stop,
        wait=budget.wait,
        retry=tenacity.retry_if_exception_type(retry_on),
        before_sleep=tell,
        sleep=sleep or time.sleep,  # looked up when the policy is made, so tests can record the pauses
        reraise=True,
    )


def sent_nowhere(error: BaseException) -> bool:
    """Whether a failed request surely never reached the server (no connection was made), so that even
    a POST may be sent again."""
    # Only HTTP callers ask, and they have requests loaded: the rules that retry a command (a lip-sync
    # tool) start without the HTTP client, about 0.1 s sooner.
    import requests  # noqa: PLC0415
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError  # noqa: PLC0415

    if isinstance(error, requests.ConnectTimeout):
        return True
    if isinstance(error, requests.ConnectionError) and error.args:
        reason = getattr(error.args[0], "reason", error.args[0])
        return isinstance(reason, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError))
    return False
