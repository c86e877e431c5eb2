"""Provider configs for the lip-sync tests: the fake tool as a ``command`` provider, the service double as
an ``http`` provider, written to a providers.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Media

FAKE = str(Path(__file__).with_name("fake_lipsync.py"))
FAKE_ARGV = [sys.executable, FAKE]


def providers_file(folder: Path, **providers: dict[str, Any]) -> dict[str, str]:
    """Write ``folder/providers.json``; returns the environment that selects it."""
    path = folder / "providers.json"
    path.write_text(json.dumps({"schema_version": 1, "providers": providers}))
    return {"VIDAX_LIPSYNC_CONFIG": str(path)}


def command(mode: str, *extra: str, **settings: Any) -> dict[str, Any]:
    """A ``command`` provider running the fake tool in ``mode`` (see fake_lipsync.py)."""
    argv = [*FAKE_ARGV, mode, "--face", "{video}", "--audio", "{audio}", "--outfile", "{output}", *extra]
    return {"type": "command", "argv": argv, "output": "{output}", "input": {"fps": 25}, **settings}


def http_provider(service_url: str, **settings: Any) -> dict[str, Any]:
    """An ``http`` provider against the test service, polling every 0.1 s."""
    return {"type": "http", "submit_url": f"{service_url}/submit", "poll_interval_seconds": 0.1, **settings}


#: A voice's pauses: silent for 0.6 s every 5 s (at 4.4-5.0 s, 9.4-10.0 s, ...), as speech between phrases.
PAUSES = "volume='if(lt(mod(t,5),4.4),1,0)':eval=frame"


def voice_with_pauses(files: Media, name: str, seconds: float) -> Path:
    """A 16 kHz tone of ``seconds`` with a pause every 5 s, in the folder of ``files``."""
    return files.tone(name, seconds, 16000, "-af", PAUSES)
