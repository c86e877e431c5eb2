"""va/config.py: where each config is found (first hit wins) and that it is validated when loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from va.config import REPO_CONFIG, config_candidates, load_config, resolve_config
from va.errors import ExitCode, VaError


def test_without_settings_the_repository_config_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIDAX_LIPSYNC_CONFIG", raising=False)
    monkeypatch.delenv("VIDAX_CONFIG", raising=False)
    assert resolve_config("lipsync.providers") == ("repository", REPO_CONFIG / "lipsync.providers.json")
    loaded = load_config("lipsync.providers")
    assert loaded.origin == "repository" and "providers" in loaded.data
    assert [origin for origin, _ in config_candidates("assets")][-2:] == ["state dir", "repository"]


def test_an_environment_variable_naming_a_missing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDAX_ASSETS_CONFIG", str(tmp_path / "nope.json"))
    assert resolve_config("assets") == ("$VIDAX_ASSETS_CONFIG", tmp_path / "nope.json")
    with pytest.raises(VaError) as caught:
        load_config("assets")
    assert caught.value.code == ExitCode.INPUT_NOT_FOUND and "nope.json" in caught.value.message


def test_a_config_breaking_its_schema_names_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "providers.json"
    path.write_text(json.dumps({"schema_version": 1, "providers": {"x": {"type": "telepathy"}}}))
    monkeypatch.setenv("VIDAX_LIPSYNC_CONFIG", str(path))
    with pytest.raises(VaError) as caught:
        load_config("lipsync.providers")
    assert caught.value.code == ExitCode.VALIDATION_FAILED
    assert str(path) in caught.value.message and "providers.x" in caught.value.message
