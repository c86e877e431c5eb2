"""The server's settings (va/vidax/settings.py): no API key, no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliRunner
from va.errors import ExitCode, VaError
from va.vidax.settings import load_settings


def test_settings_need_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vidax.json"
    path.write_text(json.dumps({"schema_version": 1}))
    monkeypatch.setenv("VIDAX_CONFIG", str(path))
    with pytest.raises(VaError) as caught:
        load_settings()
    assert caught.value.code == ExitCode.VALIDATION_FAILED
    assert "api_keys is empty" in caught.value.message


def test_the_server_refuses_to_start_without_a_key(tmp_path: Path, va_cli: CliRunner) -> None:
    config = tmp_path / "vidax.json"
    config.write_text(json.dumps({"schema_version": 1, "server": {"api_keys": []}}))
    result = va_cli("serve", env={"VIDAX_CONFIG": str(config)})
    assert result.code == ExitCode.VALIDATION_FAILED
    assert "api_keys is empty" in result.err and len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize("section", ["runs_root", "state_dir"])
def test_a_file_where_the_runs_go_is_named_at_the_start(
    tmp_path: Path, va_cli: CliRunner, section: str
) -> None:
    """runs_root (or the state_dir it defaults under) naming a file: one line, exit 34, no server."""
    blocking = tmp_path / "mine.txt"
    blocking.write_text("not a folder\n")
    config = tmp_path / "vidax.json"
    document = {"schema_version": 1, "server": {"api_keys": ["k" * 16]}, section: str(blocking)}
    config.write_text(json.dumps(document))
    result = va_cli("serve", env={"VIDAX_CONFIG": str(config)})
    assert result.code == ExitCode.STATE_DIR_UNUSABLE
    assert result.err.startswith("vidax: error: runs_root ") and len(result.err.strip().splitlines()) == 1
    assert f"{blocking} is a file, not a folder" in result.err
    assert blocking.read_text() == "not a folder\n"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["short-key"], "server.api_keys.0: must be at least 16 characters long (the value is not shown)"),
        ("a-key-given-as-a-string-0123", "server.api_keys: must be of type array (the value is not shown)"),
    ],
)
def test_a_mistyped_key_is_never_echoed(
    tmp_path: Path, va_cli: CliRunner, keys: object, expected: str
) -> None:
    config = tmp_path / "vidax.json"
    config.write_text(json.dumps({"schema_version": 1, "server": {"api_keys": keys}}))
    for command in ("serve", "doctor"):
        result = va_cli(command, env={"VIDAX_CONFIG": str(config)})
        assert result.code != 0
        assert expected in result.err + result.out
        secret = keys[0] if isinstance(keys, list) else keys
        assert secret not in result.err + result.out


def test_webhook_urls_need_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vidax.json"
    server = {"api_keys": ["a-key-of-sixteen-or-more"]}
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "server": server,
                "webhooks": {"allowed_urls": ["https://hooks.example/va"]},
            }
        )
    )
    monkeypatch.setenv("VIDAX_CONFIG", str(path))
    with pytest.raises(VaError) as caught:
        load_settings()
    assert "webhooks.allowed_urls needs webhooks.secret" in caught.value.message
