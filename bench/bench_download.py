"""Benchmark: `va install` of a large asset over HTTP keeps memory flat.

Serves a sparse file of --size-mb MiB (default 2048) with Python's http.server on loopback, installs it
with `va install` as a subprocess, and prints wall time, throughput and the peak resident memory of the
install process, next to the same figures for a 1 MiB asset. Run: .venv/bin/python bench/bench_download.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VA = [sys.executable, "-m", "va"]


def sparse_file(path: Path, size: int) -> str:
    """A file of ``size`` zero bytes that takes no disk space, and its SHA-256."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def install_once(work: Path, url: str, digest: str, name: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `va install` that fetches one asset."""
    state = work / f"state-{name}"
    manifest = work / f"assets-{name}.json"
    manifest.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "policies": {"allow_insecure_http": True},
                "assets": [{"id": name, "source": url, "sha256": digest, "destination": f"models/{name}"}],
            }
        )
    )
    env = {**os.environ, "VA_STATE_DIR": str(state), "VIDAX_ASSETS_CONFIG": str(manifest)}
    began = time.perf_counter()
    process = subprocess.Popen(
        [*VA, "install", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, rusage = os.wait4(process.pid, 0)[1:]
    seconds = time.perf_counter() - began
    if process.stdout:
        report = json.loads(process.stdout.read() or b"{}")
        statuses = {a["id"]: a["status"] for a in report.get("assets", [])}
        if statuses.get(name) != "installed":
            raise SystemExit(f"install of {name} did not succeed: {statuses}")
    shutil.rmtree(state, ignore_errors=True)
    return seconds, rusage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=2048)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="va-bench-download-") as scratch:
        work = Path(scratch)
        served = work / "served"
        served.mkdir()
        big_digest = sparse_file(served / "big.bin", args.size_mb << 20)
        small_digest = sparse_file(served / "small.bin", 1 << 20)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                str(port),
                "--bind",
                "127.0.0.1",
                "--directory",
                str(served),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            base = f"http://127.0.0.1:{port}"
            small = install_once(work, f"{base}/small.bin", small_digest, "small.bin")
            big = install_once(work, f"{base}/big.bin", big_digest, "big.bin")
        finally:
            server.terminate()
            server.wait()
    print(f"{'asset':<12} {'MiB':>7} {'seconds':>8} {'MiB/s':>8} {'peak RSS MiB':>13}")
    for label, size, (seconds, rss) in (("small", 1, small), ("big", args.size_mb, big)):
        print(f"{label:<12} {size:>7} {seconds:>8.2f} {size / seconds:>8.1f} {rss:>13.1f}")
    growth = big[1] - small[1]
    verdict = "flat" if growth < 50 else "NOT flat"
    print(f"peak memory grows by {growth:.1f} MiB for {args.size_mb} MiB more data: {verdict}")


if __name__ == "__main__":
    main()
