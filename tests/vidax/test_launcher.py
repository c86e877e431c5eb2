"""Which command starts ComfyUI (va/vidax/launcher.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from va.vidax.launcher import resolve_command


@pytest.mark.parametrize(
    ("platform", "venv_python"), [("linux", "venv/bin/python"), ("win32", "venv/Scripts/python.exe")]
)
def test_comfyui_command_prefers_the_venv_python(tmp_path: Path, platform: str, venv_python: str) -> None:
    command = ["python", "main.py", "--listen", "127.0.0.1", "--port", "8188"]
    assert resolve_command(command, tmp_path, platform) == command  # no venv: python from PATH
    (tmp_path / venv_python).parent.mkdir(parents=True)
    (tmp_path / venv_python).write_text("")
    assert resolve_command(command, tmp_path, platform) == [str(tmp_path / venv_python), *command[1:]]
    assert resolve_command(["/usr/bin/python3", "main.py"], tmp_path, platform)[0] == "/usr/bin/python3"
