"""Provider type ``http``: a remote lip-sync service. Submit the inputs, poll the status, fetch the result.

The protocol (docs/LIPSYNC_INTERFACE.md): ``POST submit_url`` (multipart: files ``video``, ``image``,
``audio``; fields ``fps``, ``seed``) answers ``{"status_url": ...}``; ``GET status_url`` answers
``{"status": "queued" | "running" | "succeeded" | "failed", "result_url": ..., "error": ...}``;
``GET result_url`` is the video.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from va.errors import ExitCode, VaError
from va.lipsync.command import ProviderRun
from va.lipsync.providers import Provider

log = logging.getLogger(__name__)
TIMEOUTS = (10, 60)
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class _Transient(Exception):
    pass


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 0.5 s, 1 s, 2 s ... capped at 30 s."""
    return random.uniform(0, min(30.0, 0.5 * 2**attempt))


def _with_retries(provider: Provider, what: str, call: Callable[[], requests.Response]) -> requests.Response:
    retries = provider.settings["retries"]
    for attempt in range(retries + 1):
        try:
            response = call()
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"{type(exc).__name__}"
        else:
            if response.status_code not in RETRYABLE_STATUS:
                return response
            problem = f"HTTP {response.status_code}"
        log.warning("%s: %s (attempt %s of %s)", what, problem, attempt + 1, retries + 1)
        if attempt < retries:
            time.sleep(_backoff(attempt))
    raise VaError(
        ExitCode.LIPSYNC_UNAVAILABLE,
        f"lip-sync provider {provider.id}: {what} failed after {retries + 1} attempt(s): {problem}",
    )


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
        return requests.post(submit_url, files=files, data=data, headers=headers, timeout=TIMEOUTS)

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
        polled = _with_retries(
            provider, "status", lambda: requests.get(status_url, headers=headers, timeout=TIMEOUTS)
        )
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
    download = _with_retries(
        provider, "download", lambda: requests.get(result_url, headers=headers, timeout=TIMEOUTS, stream=True)
    )
    if download.status_code != 200:
        raise VaError(
            ExitCode.LIPSYNC_FAILED,
            f"lip-sync provider {provider.id}: result download HTTP {download.status_code}",
        )
    with open(target, "wb") as handle:
        for block in download.iter_content(chunk_size=1 << 20):
            handle.write(block)
    return target
