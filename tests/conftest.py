"""Shared fixtures: tiny media made on the fly with ffmpeg, an isolated state dir, the CLI in-process and
as a process, one ComfyUI double for the whole test run."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import TypeAdapter

from va import cli
from va.manifest import Manifest

REPO = Path(__file__).resolve().parent.parent
#: A photograph of the astronaut Eileen Collins (NASA, public domain; see tests/data/README.md), 256x256,
#: her face at about x 87, y 31, 52 px wide: what a face detector finds.
FACE_PHOTO = REPO / "tests" / "data" / "face.jpg"
VA = [sys.executable, "-m", "va"]
DOUBLE = Path(__file__).with_name("comfyui_double.py")


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; a failure fails the test with ffmpeg's message."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def ffprobe_streams(path: Path) -> dict[str, dict[str, Any]]:
    """The first video and audio stream of a file, with counted frames."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-print_format", "json", "-show_streams", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    streams = json.loads(out)["streams"]
    return {kind: next(s for s in streams if s["codec_type"] == kind) for kind in ("video", "audio")}


#: Media made once per test process, copied to each test that asks for the same file (ffmpeg's start-up
#: costs about 0.1 s a file, and almost every test wants the same tone and image).
_MADE: dict[tuple[str, ...], Path] = {}
_MADE_DIR = Path(tempfile.mkdtemp(prefix="va-test-media-"))
atexit.register(shutil.rmtree, _MADE_DIR, True)


def calls_of(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[tuple[Any, ...]]:
    """The arguments of every call of ``owner.name`` from now on (it still does its work)."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _made(path: Path, *argv: str) -> Path:
    """``path`` as ffmpeg ``argv`` (without the output) makes it: made once, then copied."""
    key = (path.suffix, *argv)
    if key not in _MADE:
        made = _MADE_DIR / f"{len(_MADE)}{path.suffix}"
        ffmpeg(*argv, str(made))
        _MADE[key] = made
    shutil.copyfile(_MADE[key], path)
    return path


@dataclass
class Media:
    """Makes small media files in one folder."""

    root: Path

    def tone(self, name: str = "voice.wav", seconds: float = 2.0, rate: int = 16000, *extra: str) -> Path:
        source = f"sine=frequency=220:sample_rate={rate}:duration={seconds}"
        return _made(self.root / name, "-f", "lavfi", "-i", source, *extra)

    def image(self, name: str = "start.png", size: str = "320x240", pix_fmt: str = "rgb24") -> Path:
        source = f"testsrc2=size={size}:rate=1"
        return _made(self.root / name, "-f", "lavfi", "-i", source, "-frames:v", "1", "-pix_fmt", pix_fmt)

    def video(self, name: str = "start.mp4", size: str = "320x240", seconds: float = 1.0) -> Path:
        codec = ["-c:v", "libvpx-vp9"] if name.endswith(".webm") else ["-c:v", "libx264"]
        source = f"testsrc2=size={size}:rate=25:duration={seconds}"
        return _made(self.root / name, "-f", "lavfi", "-i", source, *codec, "-pix_fmt", "yuv420p")

    def face_video(self, name: str, face_seconds: float, blank_seconds: float) -> Path:
        """A 25 fps 256x256 video: the face photo for ``face_seconds``, then grey for ``blank_seconds``."""
        graph = (
            f"[0:v]scale=256:256,fps=25,trim=duration={face_seconds},setpts=PTS-STARTPTS[a];"
            f"color=c=gray:s=256x256:r=25:d={blank_seconds}[b];[a][b]concat=n=2:v=1[v]"
        )
        return _made(
            self.root / name,
            "-loop",
            "1",
            "-i",
            str(FACE_PHOTO),
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        )

    def job(self, name: str = "job.json", **sections: Any) -> Path:
        document: dict[str, Any] = {
            "schema_version": 1,
            "input": {"audio": "voice.wav", "start": "start.png"},
            "determinism": {"fps": 25, "seed_policy": "fixed", "seed": 7},
            "lipsync": {"enable": False},
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(document.get(key), dict):
                document[key] = {**document[key], **value}
            else:
                document[key] = value
        path = self.root / name
        path.write_text(json.dumps(document), encoding="utf-8")
        return path


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own VA_STATE_DIR, so nothing touches the user's ~/.va."""
    root = tmp_path_factory.mktemp("va-state")
    monkeypatch.setenv("VA_STATE_DIR", str(root))
    return root / "state"


@pytest.fixture
def files(tmp_path: Path) -> Media:
    """A media factory in a fresh folder, with a 2 s tone and a 320x240 image already made."""
    factory = Media(tmp_path)
    factory.tone()
    factory.image()
    return factory


@dataclass
class Result:
    """What a CLI call did."""

    code: int
    out: str
    err: str


CliRunner = Callable[..., Result]


@contextlib.contextmanager
def environment(env: dict[str, str] | None, cwd: Path | None) -> Iterator[None]:
    """``os.environ`` with ``env`` on top and ``cwd`` as the working directory, both restored after."""
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    os.environ.update(env or {})
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)


@pytest.fixture
def va_cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """The CLI in this process: ``cli.main(argv)`` with its stdout and stderr captured, as a user's shell
    would see them (argparse's exits included). A run still starts Snakemake as its own process."""

    def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        capsys.readouterr()  # what the test printed before is not the command's
        with environment(env, cwd):
            try:
                code = cli.main([str(arg) for arg in args])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1 if exit_.code else 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def va_process() -> CliRunner:
    """Run ``python -m va`` as a subprocess, for what only a process shows (its start, signals)."""

    def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        done = subprocess.run(
            [*VA, *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            timeout=300,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@dataclass(frozen=True)
class FinishedRun:
    """A run that went to its end, shared by the tests that only look at one (never change it)."""

    workdir: Path
    job: Path
    state_root: Path  # its VA_STATE_DIR: the registry that lists it

    @property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.workdir)


def read_manifest(workdir: Path) -> dict[str, Any]:
    """``workdir``'s manifest.json, checked against its records (va.manifest.Manifest, as VIDAX checks
    it): every field declared, of its declared type."""
    data: dict[str, Any] = json.loads((workdir / "manifest.json").read_text())
    TypeAdapter(Manifest).validate_python(data)
    return data


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """One ``va run`` of the default job (2 s tone, 320x240 still, seed 7) for the whole test run.
    A test that looks at it sets VA_STATE_DIR to ``state_root`` when it needs the registry."""
    root = tmp_path_factory.mktemp("finished-run")
    media = Media(root)
    media.tone()
    media.image()
    job, workdir, state_root = media.job(), root / "w", root / "va-state"
    done = subprocess.run(
        [*VA, "run", str(job), "--workdir", str(workdir), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "VA_STATE_DIR": str(state_root)},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return FinishedRun(workdir, job, state_root)


#: A piece of the ffmpeg command line that only this rule's ffmpeg has (its output, relative to the workdir).
RULE_FFMPEG = {
    "prepare_audio": "-f wav prepare/padded.wav",
    "hold_start_frame": "frames/still.png",  # the still written, then looped (its input named file:...)
    "lipsync": "/lipsync/input/",
    "encode": ".encode-final.mp4",
}


def slow_ffmpeg(folder: Path, seconds: float, only: str | tuple[str, ...] = "") -> Path:
    """A wrapper that sleeps, then runs the real ffmpeg, so a rule stays busy long enough to be stopped
    in it; with ``only``, just the commands holding that piece (or one of these pieces) sleep (the other
    rules run at full speed). Each call writes a wrapper of its own."""
    pieces = (only,) if isinstance(only, str) else only
    patterns = "|".join(f'*"{piece}"*' for piece in pieces) or "*"
    slow = folder / f"slow-ffmpeg-{uuid.uuid4().hex[:8]}"
    slow.write_text(f'#!/bin/sh\ncase "$*" in {patterns}) sleep {seconds};; esac\nexec ffmpeg "$@"\n')
    slow.chmod(0o755)
    return slow


#: The environment variable that marks every process a test's run starts (they all inherit it).
MARKER = "VA_TEST_MARKER"


def marked_processes(marker: str) -> list[int]:
    """The running processes whose environment carries ``VA_TEST_MARKER=marker`` (zombies excluded)."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            marked = needle in (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if marked and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return f"{pid} (ended)"


def wait_no_process_marked(marker: str, seconds: float = 10) -> None:
    """Until no process carries ``marker``; fails naming those still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while left := marked_processes(marker):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running after {seconds} s: {[_command_line(pid) for pid in left]}")
        time.sleep(0.05)


def kill_marked(marker: str, seconds: float = 10) -> None:
    """SIGKILL every process carrying ``marker``, again until none is left (one being killed may have just
    started another, e.g. a rule script its ffmpeg); fails naming those still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while left := marked_processes(marker):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running after {seconds} s: {[_command_line(pid) for pid in left]}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def wait_until_answering(url: str, process: subprocess.Popen[bytes], what: str, seconds: float = 30) -> None:
    """Until a server process just started answers ``url``; fails when it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, f"{what} did not start"
            time.sleep(0.1)


def ffmpeg_without_x264(folder: Path) -> Path:
    """An ffmpeg that lacks libx264 (as some builds do): every command asking for it fails as ffmpeg would."""
    fake = folder / "ffmpeg-without-x264"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *libx264*) echo "Unknown encoder libx264" >&2; exit 1;; esac\n'
        'exec ffmpeg "$@"\n'
    )
    fake.chmod(0o755)
    return fake


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Comfy:
    """A running ComfyUI double: its URL, fault switches and what it saw."""

    def __init__(self, url: str) -> None:
        self.url = url

    def faults(self, **faults: int) -> None:
        requests.post(f"{self.url}/__double__/faults", json=faults, timeout=5).raise_for_status()

    def checkpoints(self, *names: str) -> None:
        """The checkpoints the server has installed, until the next reset."""
        requests.post(f"{self.url}/__double__/checkpoints", json=list(names), timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = requests.get(f"{self.url}/__double__/stats", timeout=5).json()
        return data

    def reset(self) -> None:
        requests.post(f"{self.url}/__double__/reset", timeout=15).raise_for_status()


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Comfy]:
    """One double for the whole test run (one per xdist worker), on a free port."""
    port = free_port()
    root = tmp_path_factory.mktemp("comfy")
    process = subprocess.Popen(
        [sys.executable, str(DOUBLE), "--port", str(port), "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_answering(f"{url}/system_stats", process, "the ComfyUI double")
    yield Comfy(url)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def comfy(comfy_server: Comfy) -> Comfy:
    """The shared double, as new: no faults, no queue, no history, no cache, fresh stats."""
    comfy_server.reset()
    return comfy_server


def pytest_configure(config: pytest.Config) -> None:
    """The processes the tests start hear SIGINT as a terminal's foreground job does (Ctrl-C), however the
    suite was started. A shell without job control (a script, a CI step) starts a background job
    (``make test &``) with SIGINT ignored, and an ignored signal is inherited by every process below: a
    test stopping ``va`` or a rule with SIGINT would wait on a process that never hears it. A handler,
    unlike an ignored signal, is reset when a process starts a program: the tests' processes get the
    default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``whole_run`` first, each group in its order. A whole run takes seconds; with the long
    tests at the front, pytest-xdist's workers share them while there is other work to steal, instead of
    one worker ending the suite alone on a run it picked up last. At the very front, side by side, the
    tests that look at the shared ``finished_run``: each worker that gets one of them makes that run once,
    and xdist hands each worker a contiguous slice first (and steals from its end), so one worker makes it
    for all of them instead of one a worker."""
    items.sort(
        key=lambda item: (
            "finished_run" not in getattr(item, "fixturenames", ()),
            item.get_closest_marker("whole_run") is None,
        )
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many tests were skipped, even when none was: a skip is never silent."""
    skipped = len(terminalreporter.stats.get("skipped", []))
    terminalreporter.write_line(f"skipped tests: {skipped} (reasons in the short test summary above)")


#: The user ``nobody``: who a test reads as when it runs as root, whom no permission stops.
NOBODY = 65534


@contextlib.contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """While the block runs, this process may not read ``path``: its mode is 0, and as root (who reads
    anything) the process's effective user and group are ``nobody`` meanwhile."""
    mode = path.stat().st_mode
    path.chmod(0)
    as_root = os.geteuid() == 0
    try:
        if as_root:
            os.setegid(NOBODY)
            os.seteuid(NOBODY)
        yield
    finally:
        if as_root:
            os.seteuid(0)
            os.setegid(0)
        path.chmod(mode)
