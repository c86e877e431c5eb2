"""Assets: files listed in the assets manifest, fetched, verified by SHA-256 and placed in the state dir.

A download streams in blocks (memory stays flat for multi-GB checkpoints), hashes while it streams,
continues an interrupted transfer with an HTTP Range request, and appears at its destination only
after its hash matched: a mismatch installs nothing and leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict
from urllib.parse import unquote, urljoin, urlparse

import requests
from tqdm import tqdm

from va.atomic import copy_file_atomic, publish, write_json_atomic
from va.config import load_config
from va.errors import ErrorData, ExitCode, VaError
from va.locks import locked
from va.retry import RetryPolicy, retrying

BLOCK = 1 << 20
CONNECT_TIMEOUT, READ_TIMEOUT = 10, 60
DOWNLOAD_ATTEMPTS = 4
MAX_REDIRECTS = 10
STAGING = ".downloads"
VERIFIED = "assets.verified.json"


@dataclass(frozen=True)
class Asset:
    """One entry of the assets manifest."""

    id: str
    source: str
    sha256: str
    destination: str
    optional: bool = False


@dataclass(frozen=True)
class AssetsManifest:
    """The assets manifest: where it was read from, its policies, its assets."""

    path: Path
    on_missing: str
    on_hash_mismatch: str
    allow_insecure_http: bool
    assets: tuple[Asset, ...]

    @property
    def base(self) -> Path:
        """Relative sources are relative to the manifest's folder."""
        return self.path.parent


class AssetOutcomeData(TypedDict):
    """An asset's outcome as JSON (``--json`` and the API); a message and an error only when there is one."""

    id: str
    status: str
    destination: str
    message: NotRequired[str]
    error: NotRequired[ErrorData]


class VerifiedFile(TypedDict):
    """A file already verified: its size and mtime then, and its SHA-256."""

    size: int
    mtime_ns: int
    sha256: str


@dataclass
class AssetOutcome:
    """What happened to one asset."""

    id: str
    status: str  # present | installed | missing | mismatch | skipped | failed
    destination: str
    message: str = ""
    error: VaError | None = field(default=None, repr=False)

    def as_dict(self) -> AssetOutcomeData:
        """The form of ``--json`` output and of the API."""
        data = AssetOutcomeData(id=self.id, status=self.status, destination=self.destination)
        if self.message:
            data["message"] = self.message
        if self.error is not None:
            data["error"] = self.error.as_dict()
        return data


def load_assets_manifest() -> AssetsManifest:
    """The assets manifest, found by the config resolution and validated."""
    config = load_config("assets")
    policies = config.data["policies"]
    assets = tuple(
        Asset(a["id"], a["source"], a["sha256"], a["destination"], a["optional"])
        for a in config.data["assets"]
    )
    ids = [asset.id for asset in assets]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise VaError(ExitCode.VALIDATION_FAILED, f"{config.path}: assets: duplicate id {duplicated[0]!r}")
    return AssetsManifest(
        config.path,
        policies["on_missing"],
        policies["on_hash_mismatch"],
        policies["allow_insecure_http"],
        assets,
    )


def destination_path(root: Path, asset: Asset) -> Path:
    """Where ``asset`` goes; a destination that could leave ``root`` is refused."""
    relative = Path(asset.destination)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"asset {asset.id}: destination {asset.destination!r} must be relative and inside the state dir",
        )
    target = root / relative
    probe = root
    for part in relative.parts:
        probe = probe / part
        if probe.is_symlink():
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"asset {asset.id}: destination {asset.destination!r} passes through a symlink ({probe})",
            )
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
        raise VaError(ExitCode.VALIDATION_FAILED, f"asset {asset.id}: destination escapes the state dir")
    return target


def resolve_source(manifest: AssetsManifest, asset: Asset) -> str | Path:
    """A URL to download (``https://``, or ``http://`` when allowed) or a local file to copy."""
    parsed = urlparse(asset.source)
    scheme = parsed.scheme.lower()
    if scheme == "https":
        return asset.source
    if scheme == "http":
        if not manifest.allow_insecure_http:
            raise _insecure_http_refused(asset)
        return asset.source
    if scheme == "file":
        return Path(unquote(parsed.path))
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise VaError(ExitCode.VALIDATION_FAILED, f"asset {asset.id}: unsupported source scheme {scheme}://")
    return manifest.base / asset.source


def _insecure_http_refused(asset: Asset, detail: str = "") -> VaError:
    return VaError(
        ExitCode.VALIDATION_FAILED,
        f"asset {asset.id}: http:// source refused (set policies.allow_insecure_http to allow it){detail}",
    )


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


class _VerifiedCache:
    """Size, mtime and hash of files already verified, so a second install does not rehash gigabytes."""

    def __init__(self, root: Path) -> None:
        self.path = root / VERIFIED
        try:
            self.entries: dict[str, VerifiedFile] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    def digest(self, target: Path, key: str) -> str:
        stat = target.stat()
        entry = self.entries.get(key)
        if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return str(entry["sha256"])
        digest = sha256_of(target)
        self.remember(target, key, digest)
        return digest

    def remember(self, target: Path, key: str, digest: str) -> None:
        stat = target.stat()
        self.entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}

    def save(self) -> None:
        write_json_atomic(self.path, self.entries)


def asset_status(
    manifest: AssetsManifest, root: Path, cache: _VerifiedCache | None = None
) -> list[AssetOutcome]:
    """Which assets are present (hash verified), missing, or mismatched; changes nothing on disk."""
    cache = cache or _VerifiedCache(root)
    outcomes = []
    for asset in manifest.assets:
        try:
            target = destination_path(root, asset)
        except VaError as exc:
            outcomes.append(AssetOutcome(asset.id, "failed", asset.destination, exc.message, exc))
            continue
        if not target.is_file():
            outcomes.append(
                AssetOutcome(asset.id, "missing", asset.destination, "optional" if asset.optional else "")
            )
        elif cache.digest(target, asset.destination) == asset.sha256:
            outcomes.append(AssetOutcome(asset.id, "present", asset.destination))
        else:
            outcomes.append(
                AssetOutcome(asset.id, "mismatch", asset.destination, "sha256 differs from the manifest")
            )
    return outcomes


def install_assets(
    manifest: AssetsManifest,
    root: Path,
    *,
    with_optional: bool = False,
    progress: bool = True,
) -> list[AssetOutcome]:
    """Fetch and verify every asset that is missing, following the manifest's policies."""
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / ".assets.lock", timeout=600):
        cache = _VerifiedCache(root)
        outcomes = []
        for asset, outcome in zip(manifest.assets, asset_status(manifest, root, cache), strict=True):
            outcomes.append(
                _settle(
                    manifest,
                    root,
                    asset,
                    outcome,
                    cache=cache,
                    with_optional=with_optional,
                    progress=progress,
                )
            )
        cache.save()
    return outcomes


def _settle(
    manifest: AssetsManifest,
    root: Path,
    asset: Asset,
    outcome: AssetOutcome,
    *,
    cache: _VerifiedCache,
    with_optional: bool,
    progress: bool,
) -> AssetOutcome:
    if outcome.status in ("present", "failed"):
        return outcome
    if outcome.status == "missing":
        if asset.optional and not with_optional:
            return AssetOutcome(
                asset.id, "skipped", asset.destination, "optional; install with --with-optional"
            )
        if manifest.on_missing == "skip":
            return AssetOutcome(asset.id, "skipped", asset.destination, "missing (policies.on_missing: skip)")
        if manifest.on_missing == "fail":
            error = VaError(
                ExitCode.INPUT_NOT_FOUND, f"asset {asset.id}: missing (policies.on_missing: fail)"
            )
            return AssetOutcome(asset.id, "missing", asset.destination, error.message, error)
    elif manifest.on_hash_mismatch == "fail":
        error = VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"asset {asset.id}: {asset.destination} does not match its sha256; left as it is "
            "(policies.on_hash_mismatch: fail)",
        )
        return AssetOutcome(asset.id, "mismatch", asset.destination, error.message, error)
    try:
        target = destination_path(root, asset)
        fetch_asset(manifest, root, asset, target, progress)
    except VaError as exc:
        return AssetOutcome(asset.id, "failed", asset.destination, exc.message, exc)
    cache.remember(target, asset.destination, asset.sha256)
    return AssetOutcome(asset.id, "installed", asset.destination)


def fetch_asset(manifest: AssetsManifest, root: Path, asset: Asset, target: Path, progress: bool) -> None:
    """Stream ``asset`` to a staging file, verify it, and move it into place (keeping a replaced file)."""
    source = resolve_source(manifest, asset)
    staging = root / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    partial = staging / f"{asset.id}.{asset.sha256[:16]}.part"
    digest = (
        _download(source, partial, asset, progress, allow_insecure_http=manifest.allow_insecure_http)
        if isinstance(source, str)
        else _copy(source, partial, asset)
    )
    if digest != asset.sha256:
        partial.unlink(missing_ok=True)
        raise VaError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"asset {asset.id}: sha256 mismatch: expected {asset.sha256}, got {digest} from {asset.source}; "
            "nothing installed",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.rename(target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}"))
    # The download stays in the staging folder until it is whole (a later attempt resumes it there).
    publish(partial, target)


def _copy(source: Path, partial: Path, asset: Asset) -> str:
    if not source.is_file():
        raise VaError(ExitCode.INPUT_NOT_FOUND, f"asset {asset.id}: source not found: {source}")
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(partial, "wb") as writer:
        while block := reader.read(BLOCK):
            digest.update(block)
            writer.write(block)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def _download(url: str, partial: Path, asset: Asset, progress: bool, *, allow_insecure_http: bool) -> str:
    # A download resumes from what the partial file holds, so every attempt is safe to repeat.
    policy = RetryPolicy(DOWNLOAD_ATTEMPTS, cap=8.0)
    transient = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    try:
        return retrying(policy, transient)(_download_once, url, partial, asset, progress, allow_insecure_http)
    except transient as exc:
        raise VaError(
            ExitCode.INPUT_NOT_FOUND, f"asset {asset.id}: download failed: {_reason(exc)}"
        ) from None


def _reason(error: Exception | None) -> str:
    text = str(error) if error else "unknown error"
    return text if len(text) < 200 else text[:200] + "..."


def _download_once(url: str, partial: Path, asset: Asset, progress: bool, allow_insecure_http: bool) -> str:
    digest = hashlib.sha256()
    have = partial.stat().st_size if partial.exists() else 0
    if have:
        with open(partial, "rb") as handle:
            while block := handle.read(BLOCK):
                digest.update(block)
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _get_following_redirects(url, headers, asset, allow_insecure_http)
    except requests.exceptions.SSLError as exc:
        raise VaError(
            ExitCode.INPUT_NOT_FOUND, f"asset {asset.id}: TLS verification failed for {url}"
        ) from exc
    with response:
        if response.status_code == 416 and have:  # the partial file is already whole
            return digest.hexdigest()
        if response.status_code not in (200, 206):
            raise VaError(
                ExitCode.INPUT_NOT_FOUND, f"asset {asset.id}: {url} answered HTTP {response.status_code}"
            )
        if response.status_code == 200 and have:  # the server ignored the Range: start over
            have, digest = 0, hashlib.sha256()
        total = have + int(response.headers.get("Content-Length", 0) or 0)
        with (
            open(partial, "ab" if have else "wb") as writer,
            tqdm(
                total=total or None,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=asset.id,
                disable=not progress or None,
                leave=False,
            ) as bar,
        ):
            for block in _blocks(response):
                digest.update(block)
                writer.write(block)
                bar.update(len(block))
            writer.flush()
            os.fsync(writer.fileno())
    return digest.hexdigest()


def _get_following_redirects(
    url: str, headers: dict[str, str], asset: Asset, allow_insecure_http: bool
) -> requests.Response:
    """GET ``url``, following redirects one by one: an https:// source that redirects to plain http:// is
    refused before anything is sent there, as an http:// source is (unless ``allow_insecure_http``)."""
    for _ in range(MAX_REDIRECTS + 1):
        response = requests.get(
            url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False
        )
        if not response.is_redirect:
            return response
        location = urljoin(url, response.headers["Location"])
        response.close()
        scheme = urlparse(location).scheme.lower()
        if scheme == "http" and not allow_insecure_http:
            raise _insecure_http_refused(asset, f": {url} redirects to {location}")
        if scheme not in ("http", "https"):
            raise VaError(
                ExitCode.VALIDATION_FAILED,
                f"asset {asset.id}: unsupported source scheme {scheme}:// ({url} redirects to {location})",
            )
        url = location
    raise VaError(ExitCode.INPUT_NOT_FOUND, f"asset {asset.id}: more than {MAX_REDIRECTS} redirects")


def _blocks(response: requests.Response) -> Iterator[bytes]:
    yield from (block for block in response.iter_content(chunk_size=BLOCK) if block)


def copy_without_overwriting(source: Path, target: Path, force: bool) -> str:
    """Copy one example file; an edited copy is kept, or with ``force`` backed up then replaced."""
    if target.exists():
        if target.read_bytes() == source.read_bytes():
            return "unchanged"
        if not force:
            return "kept (edited; --force replaces it, keeping a backup)"
        backup = target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(target, backup)
        copy_file_atomic(source, target)
        return f"replaced (backup: {backup.name})"
    copy_file_atomic(source, target)
    return "copied"
