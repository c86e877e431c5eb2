"""Provider type ``http``: a remote lip-sync service. Submit the inputs, poll the status, fetch the result.

The protocol (docs/LIPSYNC_INTERFACE.md): ``POST submit_url`` (multipart: files ``video``, ``image``,
``audio``; fields ``fps``, ``seed``) answers ``{"status_url": ...}``; ``GET status_url`` answers
``{"status": "queued" | "running" | "succeeded" | "failed", "result_url": ..., "error": ...}``;
``GET result_url`` is the video.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import requests

from va.atomic import stream_to_file
from va.errors import ExitCode, VaError
from va.lipsync.command import ProviderRun
from va.lipsync.providers import Provider
from va.retry import POST_RETRYABLE_STATUS, RETRYABLE_STATUS, RetryPolicy, retrying, sent_nowhere

log = logging.getLogger(__name__)
TIMEOUTS = (10, 60)
T = TypeVar("T")


class _Transient(Exception):
    """A failure worth another attempt (a retryable HTTP status, a cut-off transfer, no connection)."""


def _with_retries(provider: Provider, what: str, call: Callable[[], T]) -> T:
    """``call`` under the retry policy (``retries`` more attempts); giving up is LIPSYNC_UNAVAILABLE."""
    attempts = provider.settings["retries"] + 1

    def tell(attempt: int, pause: float, error: BaseException) -> None:
        log.warning("%s: %s (attempt %s of %s); again in %.1f s", what, error, attempt, attempts, pause)

    try:
        return retrying(RetryPolicy(attempts), _Transient, before_sleep=tell)(call)
    except _Transient as exc:
        raise VaError(
            ExitCode.LIPSYNC_UNAVAILABLE,
            f"lip-sync provider {provider.id}: {what} failed after {attempts} attempt(s): {exc}",
        ) from None


def _request(method: str, url: str, *, changes: bool = False, **kwargs: Any) -> requests.Response:
    """One request; a retryable failure raises ``_Transient`` (a retryable status is closed first, so its
    connection goes back to the pool). A request that ``changes`` something on the service (a submit)
    is retryable only when it surely did not arrive or was refused (va.retry)."""
    try:
        response = requests.request(method, url, timeout=TIMEOUTS, **kwargs)
    except (requests.ConnectionError, requests.Timeout) as exc:
        if changes and not sent_nowhere(exc):
            raise VaError(
                ExitCode.LIPSYNC_UNAVAILABLE,
                f"{method} {url}: {type(exc).__name__} after the request was sent; not sent again, as the "
                "service may have taken it",
            ) from exc
        raise _Transient(type(exc).__name__) from exc
    if response.status_code in (POST_RETRYABLE_STATUS if changes else RETRYABLE_STATUS):
        response.close()
        raise _Transient(f"HTTP {response.status_code}")
    return response


def _json(provider: Provider, response: requests.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise VaError(ExitCode.LIPSYNC_FAILED, f"lip-sync provider {provider.id}: {what} did not answer JSON")
    return data


def run_http_provider(provider: Provider, run: ProviderRun, inputs: dict[str, Path]) -> Path:
    """Submit ``inputs`` to the service, wait for it, and download the result into the provider's folder."""
    settings = provider.settings
    headers = settings["headers"]
    submit_url = settings["submit_url"]
    deadline = time.monotonic() + settings["timeout_seconds"]

    def submit() -> requests.Response:
        files = {name: (path.name, path.read_bytes()) for name, path in inputs.items()}
        data = {"fps": run.values["fps"], "seed": run.values["seed"]}
        return _request("POST", submit_url, changes=True, files=files, data=data, headers=headers)

    response = _with_retries(provider, "submit", submit)
    if response.status_code >= 400:
        raise VaError(
            ExitCode.LIPSYNC_INPUT_REJECTED,
            f"lip-sync provider {provider.id} rejected the job: "
            f"HTTP {response.status_code}: {response.text[:300]}",
        )
    status_url = urljoin(submit_url, str(_json(provider, response, "submit").get("status_url", "")))
    while True:
        if time.monotonic() > deadline:
            raise VaError(
                ExitCode.LIPSYNC_TIMEOUT,
                f"lip-sync provider {provider.id} did not finish within {settings['timeout_seconds']} s",
            )
        polled = _with_retries(provider, "status", lambda: _request("GET", status_url, headers=headers))
        state = _json(provider, polled, "status")
        status = state.get("status")
        if status == "succeeded":
            break
        if status == "failed":
            code = (
                ExitCode.LIPSYNC_INPUT_REJECTED
                if state.get("error_kind") == "input"
                else ExitCode.LIPSYNC_FAILED
            )
            raise VaError(
                code, f"lip-sync provider {provider.id} failed: {state.get('error', 'no reason given')}"
            )
        time.sleep(settings["poll_interval_seconds"])
    result_url = urljoin(status_url, str(state.get("result_url", "")))
    target = run.workdir / "result.mp4"
    _download(provider, result_url, headers, target)
    return target


def _download(provider: Provider, url: str, headers: dict[str, str], target: Path) -> None:
    """Stream the result to a temporary name and rename it: ``target`` is whole or absent."""

    def fetch() -> None:
        with _request("GET", url, headers=headers, stream=True) as response:
            if response.status_code != 200:
                raise VaError(
                    ExitCode.LIPSYNC_FAILED,
                    f"lip-sync provider {provider.id}: result download HTTP {response.status_code}",
                )
            try:
                stream_to_file(target, response.iter_content(chunk_size=1 << 20))
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                raise _Transient(f"download cut off: {type(exc).__name__}") from exc

    _with_retries(provider, "download", fetch)
