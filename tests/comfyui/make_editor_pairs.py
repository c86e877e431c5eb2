"""Make editor/API pairs with ComfyUI's own frontend: each editor-format workflow is loaded into the
frontend a running ComfyUI serves (headless Chromium over the DevTools protocol) with
``app.loadGraphData(workflow)``, and ``(await app.graphToPrompt()).output`` - what "Save (API)" writes - is
saved beside it. Not a test: the pairs it makes are test data (tests/data/comfyui_pairs/README.md).

    python tests/comfyui/make_editor_pairs.py --server http://127.0.0.1:8188 --out DIR WORKFLOW.json ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import websocket

LOAD_AND_EXPORT = (
    "(async () => { const wf = %s; await app.loadGraphData(wf); "
    "const p = await app.graphToPrompt(); return JSON.stringify(p.output); })()"
)


class Page:
    """One Chromium tab, spoken to over the DevTools protocol."""

    def __init__(self, address: str) -> None:
        self.socket = websocket.create_connection(address, timeout=120, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == number:
                return dict(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited), or an error naming what the page threw."""
        answer = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        result = answer.get("result", {})
        if "exceptionDetails" in result or "value" not in result.get("result", {}):
            raise RuntimeError(json.dumps(answer)[:500])
        return result["result"]["value"]


def main() -> None:
    """Start Chromium, open the frontend, export every workflow named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=9333, help="Chromium's DevTools port")
    parser.add_argument("workflows", nargs="+", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [
                "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                f"--remote-debugging-port={args.port}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            page = Page(_first_tab(args.port))
            page.call("Page.navigate", url=args.server.rstrip("/") + "/")
            _wait(lambda: page.evaluate("!!(window.app && window.app.graph)"))
            for path in args.workflows:
                output = page.evaluate(LOAD_AND_EXPORT % path.read_text(encoding="utf-8"))
                target = args.out / f"{path.name.removesuffix('.json').removesuffix('.workflow')}.api.json"
                target.write_text(json.dumps(json.loads(output), indent=1, sort_keys=True) + "\n")
                print(f"{path.name} -> {target}")
        finally:
            browser.terminate()
            browser.wait()


def _first_tab(port: int) -> str:
    for _ in range(100):
        try:
            tabs = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=1).json()
            return str(next(tab for tab in tabs if tab["type"] == "page")["webSocketDebuggerUrl"])
        except (requests.RequestException, StopIteration, ValueError):
            time.sleep(0.2)
    raise RuntimeError("Chromium did not open its DevTools port")


def _wait(ready: Any, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if ready():
                time.sleep(2)  # the frontend registers its node definitions right after the app appears
                return
        except RuntimeError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the ComfyUI frontend did not load")


if __name__ == "__main__":
    main()
