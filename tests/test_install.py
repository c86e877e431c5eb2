"""va install: configs copied without loss, assets fetched over file://, paths, HTTP and HTTPS, verified."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRunner
from tests.fileserver import make_certificate, serve
from va import install
from va.config import REPO_CONFIG, resolve_config
from va.errors import ExitCode


def write_manifest(folder: Path, assets: list[dict[str, Any]], **policies: Any) -> Path:
    path = folder / "assets.json"
    path.write_text(
        json.dumps({"schema_version": 1, "policies": policies, "assets": assets}), encoding="utf-8"
    )
    return path


def blob(folder: Path, name: str, size: int) -> tuple[Path, str]:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def source_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    monkeypatch.setenv("VIDAX_ASSETS_CONFIG", str(folder / "assets.json"))
    return folder


def statuses(report: install.InstallReport) -> dict[str, str]:
    return {outcome.id: outcome.status for outcome in report.assets}


def test_fresh_install_copies_configs_and_the_bundled_workflow(state_dir: Path) -> None:
    report = install.install(progress=False)
    shipped = {
        "vidax_text2img_frames",
        "vidax_text2img_frames.bindings",
        "held_start_batch",
        "held_start_batch.bindings",
        *(
            f"{t}{part}"
            for t in ("wan21_infinitetalk_segment", "wan22_s2v_segment", "humo_segment")
            for part in ("", ".bindings")
        ),
    }
    assert statuses(report) == dict.fromkeys(shipped, "installed")
    installed = state_dir / "comfyui" / "workflows" / "vidax_text2img_frames.json"
    assert json.loads(installed.read_text())["3"]["class_type"] == "KSampler"
    for name in ("vidax", "lipsync.providers", "assets"):
        assert (state_dir / "config" / f"{name}.json").is_file()
    assert (state_dir / "assets" / "workflows" / "vidax_text2img_frames.json").is_file()
    again = install.install(progress=False)
    assert statuses(again) == dict.fromkeys(shipped, "present") and again.downloaded == 0
    assert set(again.files.values()) == {"unchanged"}


def test_an_edited_config_is_kept_and_force_keeps_a_backup(state_dir: Path) -> None:
    install.install(progress=False)
    vidax = state_dir / "config" / "vidax.json"
    edited = vidax.read_text().replace("8787", "9999")
    vidax.write_text(edited)
    report = install.install(progress=False)
    assert report.files["config/vidax.json"].startswith("kept")
    assert vidax.read_text() == edited
    forced = install.install(force=True, progress=False)
    assert forced.files["config/vidax.json"].startswith("replaced")
    backups = list(vidax.parent.glob("vidax.json.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == edited
    assert "8787" in vidax.read_text()


def test_file_url_and_relative_sources(source_dir: Path, state_dir: Path) -> None:
    (source_dir / "models").mkdir()
    model, digest = blob(source_dir / "models", "tiny.bin", 5000)
    other, other_digest = blob(source_dir, "other.bin", 300)
    write_manifest(
        source_dir,
        [
            {
                "id": "relative",
                "source": "models/tiny.bin",
                "sha256": digest,
                "destination": "models/tiny.bin",
            },
            {
                "id": "file-url",
                "source": other.as_uri(),
                "sha256": other_digest,
                "destination": "x/other.bin",
            },
        ],
    )
    report = install.install(progress=False)
    assert statuses(report) == {"relative": "installed", "file-url": "installed"}
    assert (state_dir / "models" / "tiny.bin").read_bytes() == model.read_bytes()
    assert (state_dir / "x" / "other.bin").read_bytes() == other.read_bytes()
    assert statuses(install.status()) == {"relative": "present", "file-url": "present"}


def test_hash_mismatch_installs_nothing_and_exits_12(
    source_dir: Path, state_dir: Path, va_cli: CliRunner
) -> None:
    blob(source_dir, "model.bin", 4000)
    write_manifest(
        source_dir, [{"id": "m", "source": "model.bin", "sha256": "0" * 64, "destination": "m/model.bin"}]
    )
    result = va_cli("install")
    assert result.code == ExitCode.UNSUPPORTED_FORMAT
    assert "sha256 mismatch" in result.err and "Traceback" not in result.err
    assert not (state_dir / "m" / "model.bin").exists()
    assert not [p for p in (state_dir / ".downloads").iterdir()]


def test_status_reports_missing_and_mismatched(source_dir: Path, state_dir: Path, va_cli: CliRunner) -> None:
    _, digest = blob(source_dir, "a.bin", 100)
    write_manifest(
        source_dir,
        [
            {"id": "a", "source": "a.bin", "sha256": digest, "destination": "a.bin"},
            {"id": "b", "source": "a.bin", "sha256": digest, "destination": "b.bin", "optional": True},
        ],
    )
    state_dir.mkdir(parents=True)
    (state_dir / "a.bin").write_bytes(b"someone else's file")
    result = va_cli("install", "--status", "--json")
    assert result.code == 0
    assert {a["id"]: a["status"] for a in json.loads(result.out)["assets"]} == {
        "a": "mismatch",
        "b": "missing",
    }
    failed = va_cli("install")
    assert failed.code == ExitCode.UNSUPPORTED_FORMAT and "on_hash_mismatch" in failed.err
    assert (state_dir / "a.bin").read_bytes() == b"someone else's file"  # never overwritten by default


@pytest.mark.parametrize(
    "destination", ["../outside.bin", "/etc/outside.bin", "models/../../outside.bin", "link/inside.bin"]
)
def test_destinations_that_escape_the_state_dir_are_refused(
    source_dir: Path, state_dir: Path, tmp_path: Path, destination: str
) -> None:
    _, digest = blob(source_dir, "a.bin", 10)
    state_dir.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (state_dir / "link").symlink_to(outside)
    write_manifest(source_dir, [{"id": "a", "source": "a.bin", "sha256": digest, "destination": destination}])
    report = install.install(progress=False)
    assert statuses(report) == {"a": "failed"}
    failure = report.failure()
    assert failure is not None and failure.code == ExitCode.VALIDATION_FAILED
    assert not list(outside.iterdir()) and not (tmp_path / "outside.bin").exists()


def test_http_is_refused_unless_allowed_then_downloads(source_dir: Path, state_dir: Path) -> None:
    model, digest = blob(source_dir, "model.bin", 3_000_000)
    with serve(source_dir) as served:
        entry = {"id": "m", "source": f"{served.url}/model.bin", "sha256": digest, "destination": "m.bin"}
        write_manifest(source_dir, [entry])
        refused = install.install(progress=False)
        assert statuses(refused) == {"m": "failed"}
        assert "allow_insecure_http" in refused.assets[0].message
        assert served.requests == []
        write_manifest(source_dir, [entry], allow_insecure_http=True)
        assert statuses(install.install(progress=False)) == {"m": "installed"}
        assert (state_dir / "m.bin").read_bytes() == model.read_bytes()
        count = len(served.requests)
        assert statuses(install.install(progress=False)) == {"m": "present"}
        assert len(served.requests) == count  # idempotent: nothing fetched again


def test_an_interrupted_download_resumes_with_range(source_dir: Path, state_dir: Path) -> None:
    model, digest = blob(source_dir, "big.bin", 4_000_000)
    with serve(source_dir) as served:
        served.cut_after["/big.bin"] = 1_500_000
        write_manifest(
            source_dir,
            [{"id": "big", "source": f"{served.url}/big.bin", "sha256": digest, "destination": "big.bin"}],
            allow_insecure_http=True,
        )
        report = install.install(progress=False)
    assert statuses(report) == {"big": "installed"}
    assert (state_dir / "big.bin").read_bytes() == model.read_bytes()
    assert served.requests[0] == ("/big.bin", None)
    path, ranged = served.requests[1]
    assert path == "/big.bin" and ranged is not None
    resumed_from = int(ranged.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_from <= 1_500_000  # continued from what reached the disk, not from zero
    assert len(served.requests) == 2


def test_https_with_a_test_certificate(
    source_dir: Path, state_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    model, digest = blob(source_dir, "model.bin", 200_000)
    cert, key = make_certificate(tmp_path)
    with serve(source_dir, tls=(cert, key)) as served:
        write_manifest(
            source_dir,
            [{"id": "m", "source": f"{served.url}/model.bin", "sha256": digest, "destination": "m.bin"}],
        )
        untrusted = install.install(progress=False)
        assert statuses(untrusted) == {"m": "failed"} and "TLS" in untrusted.assets[0].message
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        assert statuses(install.install(progress=False)) == {"m": "installed"}
    assert (state_dir / "m.bin").read_bytes() == model.read_bytes()


def test_an_https_source_redirecting_to_http_is_refused_unless_allowed(
    source_dir: Path, state_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    model, digest = blob(source_dir, "model.bin", 200_000)
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with serve(source_dir) as plain, serve(source_dir, tls=(cert, key)) as secure:
        secure.redirects["/model.bin"] = f"{plain.url}/model.bin"
        entry = {"id": "m", "source": f"{secure.url}/model.bin", "sha256": digest, "destination": "m.bin"}
        write_manifest(source_dir, [entry])
        refused = install.install(progress=False)
        assert statuses(refused) == {"m": "failed"}
        message = refused.assets[0].message
        assert "http:// source refused" in message and "allow_insecure_http" in message
        assert f"redirects to {plain.url}/model.bin" in message
        failure = refused.failure()
        assert failure is not None and failure.code == ExitCode.VALIDATION_FAILED
        assert plain.requests == []  # nothing was sent over plain http
        assert not (state_dir / "m.bin").exists()
        write_manifest(source_dir, [entry], allow_insecure_http=True)
        assert statuses(install.install(progress=False)) == {"m": "installed"}
        assert plain.requests == [("/model.bin", None)]
    assert (state_dir / "m.bin").read_bytes() == model.read_bytes()


def test_an_invalid_assets_config_names_file_and_field(source_dir: Path, va_cli: CliRunner) -> None:
    write_manifest(source_dir, [{"id": "a", "source": "a.bin", "sha256": "abc", "destination": "a"}])
    result = va_cli("install")
    assert result.code == ExitCode.VALIDATION_FAILED
    assert "assets.json" in result.err and "assets.0.sha256" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_configs_resolve_env_then_vidax_state_dir_then_state_then_repo(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_config("lipsync.providers") == ("repository", REPO_CONFIG / "lipsync.providers.json")
    install.install(progress=False)
    assert resolve_config("lipsync.providers")[1] == state_dir / "config" / "lipsync.providers.json"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "config").mkdir(parents=True)
    (elsewhere / "config" / "lipsync.providers.json").write_text('{"schema_version": 1, "providers": {}}')
    vidax = state_dir / "config" / "vidax.json"
    vidax.write_text(vidax.read_text().replace('"state_dir": null', f'"state_dir": "{elsewhere}"'))
    assert resolve_config("lipsync.providers")[1] == elsewhere / "config" / "lipsync.providers.json"
    monkeypatch.setenv("VIDAX_LIPSYNC_CONFIG", str(tmp_path / "mine.json"))
    assert resolve_config("lipsync.providers") == ("$VIDAX_LIPSYNC_CONFIG", tmp_path / "mine.json")
