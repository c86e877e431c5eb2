"""A pool of ComfyUI servers: slots shared between processes, the stage's batches spread over the servers,
failover to another server when one dies mid-prompt, and a server that comes back used again."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.comfyui.test_stage import (
    StageFactory,
    make_stage,  # noqa: F401 - a fixture of these tests too
    video_of,
)
from tests.conftest import DOUBLE, REPO, VA, Comfy, Media, ffprobe_streams, free_port, wait_until_answering
from va.cli import render_run
from va.comfyui import pool as pool_module
from va.comfyui import stage
from va.comfyui.pool import (
    SERVING,
    TALKING,
    JobRequest,
    PoolServer,
    PoolSettings,
    ServerPool,
    ServerStart,
    job_request,
    resolve_pool,
    servers_of,
)
from va.comfyui.workflow import load_workflow
from va.errors import ExitCode, VaError
from va.events import read_events
from va.job import load_job
from va.manifest import build_manifest
from va.processes import ProcessId
from va.runner import RunOptions, comfyui_resources, profile_config
from va.tracking import record_run_started

#: A process that takes the leases of server a (its slot, and one prompt queued) and keeps them until killed.
HOLDER = """
import sys, time
from pathlib import Path
from va.comfyui.pool import PoolServer, ServerPool
leases = [ServerPool((PoolServer("http://a:1", 1),), Path(sys.argv[1])).acquire() for _ in range(2)]
print("held", flush=True)
time.sleep(60)
"""


class DoubleProcess(Comfy):
    """A ComfyUI double of a test's own, on a port of its own: killed and started again on that port
    (a ComfyUI that died and was restarted)."""

    def __init__(self, root: Path, version: str = "0.26.0", step_delay: float = 0.005) -> None:
        self.root, self.version, self.port, self.step_delay = root, version, free_port(), step_delay
        super().__init__(f"http://127.0.0.1:{self.port}")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(DOUBLE),
                "--port",
                str(self.port),
                "--root",
                str(self.root),
                "--comfyui-version",
                self.version,
                "--step-delay",
                str(self.step_delay),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_answering(f"{self.url}/system_stats", self.process, "a ComfyUI double")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def doubles(tmp_path: Path) -> Iterator[list[DoubleProcess]]:
    """Two doubles of this test's own, the second reporting another ComfyUI version."""
    made = [DoubleProcess(tmp_path / "a"), DoubleProcess(tmp_path / "b", version="0.25.1")]
    yield made
    for double in made:
        if double.process is not None and double.process.poll() is None:
            double.process.terminate()
            double.process.wait(timeout=10)


# --- the pool's settings and slots ------------------------------------------------------------------


def test_a_pool_is_named_by_the_job_else_the_profile_else_vidax() -> None:
    vidax = {"url": "http://127.0.0.1:8188", "servers": [], "start_in_job": None}
    assert resolve_pool(None, {}, vidax).servers == (PoolServer("http://127.0.0.1:8188", 1),)
    named = ["http://a:1/", {"url": "http://b:2", "slots": 3}, "http://a:1"]
    assert servers_of(named) == (PoolServer("http://a:1", 1), PoolServer("http://b:2", 3))
    profile = {"comfyui_servers": [{"url": "http://p:1", "slots": 2}]}
    assert resolve_pool(None, profile, vidax).slots == 2
    assert resolve_pool("http://j:1", profile, vidax).servers == (PoolServer("http://j:1", 1),)
    start = {"command": ["python", "main.py", "--port", "{port}"]}
    from_vidax = resolve_pool(None, {}, {**vidax, "start_in_job": start})
    assert from_vidax.start is not None and from_vidax.start.cluster_only
    settings = resolve_pool(None, {"comfyui_start": start}, vidax)
    assert settings.start is not None and not settings.start.cluster_only
    assert PoolSettings.from_params(settings.as_params()) == settings


def test_slots_are_shared_between_processes_and_freed_when_a_holder_dies(tmp_path: Path) -> None:
    """A server has at most its slots and one queued prompt of va at once; a unit killed while it holds
    a lease does not keep it."""
    servers = (PoolServer("http://a:1", 1), PoolServer("http://b:1", 2))
    pool = ServerPool(servers, tmp_path)
    held = [pool.acquire() for _ in range(5)]
    assert sorted(lease.url for lease in held) == ["http://a:1"] * 2 + ["http://b:1"] * 3
    assert (pool.busy("http://a:1"), pool.busy("http://b:1")) == (2, 3)
    for lease in held:
        lease.release()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    assert pool.busy("http://a:1") == 2
    assert pool.acquire().url == "http://b:1"  # the other server's free slot, at once
    holder.kill()
    holder.wait(timeout=10)
    assert pool.busy("http://a:1") == 0


def test_a_failed_server_is_left_out_for_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit waits for a free slot of a good server rather than take a server that failed a moment ago;
    once the mark has run out the server is tried again; when every server failed, any is tried."""
    monkeypatch.setattr(pool_module, "DOWN_SECONDS", 0.5)
    pool = ServerPool((PoolServer("http://a:1", 1), PoolServer("http://b:1", 1)), tmp_path)
    pool.mark_down("http://a:1")
    first = [pool.acquire(), pool.acquire()]
    assert [lease.url for lease in first] == ["http://b:1", "http://b:1"]
    began = time.monotonic()
    second = pool.acquire()
    assert second.url == "http://a:1" and time.monotonic() - began >= 0.3
    for lease in [*first, second]:
        lease.release()
    pool.mark_down("http://a:1")
    pool.mark_down("http://b:1")
    lease = pool.acquire(avoid="http://a:1")
    assert lease.url == "http://b:1" and pool.is_down("http://b:1")


def test_a_freed_slot_goes_to_the_stage_that_began_first(tmp_path: Path) -> None:
    """Units of two stages wait for the one server: the slot freed goes to the stage that began first,
    however long the other one's unit has waited, so videos finish one after another."""
    pool = ServerPool((PoolServer("http://a:1", 1),), tmp_path)
    held = [pool.acquire(), pool.acquire()]
    taken: list[str] = []

    def wait(stage: str, began: float) -> None:
        lease = pool.acquire(queued_since=began)
        taken.append(stage)
        time.sleep(0.3)  # held a moment: the other stage's unit sees the server full
        lease.release()

    later = threading.Thread(target=wait, args=("later", time.time()))
    later.start()
    time.sleep(0.2)  # the later stage's unit has waited longer
    earlier = threading.Thread(target=wait, args=("earlier", time.time() - 60))
    earlier.start()
    time.sleep(0.2)
    held[0].release()
    earlier.join(timeout=10)
    later.join(timeout=10)
    held[1].release()
    assert taken == ["earlier", "later"]
    assert not list((tmp_path / "waiting").iterdir())  # no place in the line is left behind


# --- the stage on two doubles ----------------------------------------------------------------------------


def test_failover_a_server_dying_mid_prompt_moves_the_batch_and_frees_its_slot(
    make_stage: StageFactory,  # noqa: F811 - the fixture imported above
    doubles: list[DoubleProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first server hangs on the prompt and is killed: the batch goes on on the second, whose frames
    are exact; the dead server's slot is not left taken; the records name the server and its version."""
    monkeypatch.setattr(pool_module, "FAILOVER_SECONDS", 1.0)
    monkeypatch.setattr(stage, "FAILOVER_SECONDS", 1.0)
    first, second = doubles
    made = make_stage("held_start_batch", held_still=True, url=[first.url, second.url])
    servers = stage.StageServers(stage.job_pool(made.job))
    busy_second = [servers.pool.acquire(avoid=first.url) for _ in range(2)]  # the batch must go to the first
    assert {lease.url for lease in busy_second} == {second.url}
    first.faults(hang=1)

    def kill_when_running() -> None:
        deadline = time.monotonic() + 20
        while not first.stats()["prompts"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for lease in busy_second:
            lease.release()
        first.kill()

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    document = stage.run_batch(
        made.settings,
        "0000",
        still=made.still,
        result=made.run.batch_result("0000"),
        workdir=made.run.root,
        report=made.report("0000"),
        servers=servers,
    )
    killer.join()
    assert document["server"] == second.url and document["comfyui_version"] == "0.25.1"
    assert servers.pool.busy(first.url) == 0 and servers.pool.busy(second.url) == 0
    outcomes = [(a["server"], a["outcome"]) for a in made.attempts("0000")]
    assert outcomes == [
        (first.url, "submitted"),
        (first.url, "transient"),
        (second.url, "submitted"),
        (second.url, "succeeded"),
    ]
    assert len(second.stats()["prompts"]) == 1
    servers.close()


def test_a_restarted_server_is_used_again_and_a_mixed_pool_is_recorded(
    make_stage: StageFactory,  # noqa: F811 - the fixture imported above
    doubles: list[DoubleProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first server is down when the stage starts: its batch goes to the second. Started again, the
    first takes the next batch (the second is busy). Every frame is exact, and the manifest names each
    batch's server and version."""
    monkeypatch.setattr(pool_module, "DOWN_SECONDS", 0.5)
    first, second = doubles
    made = make_stage("held_start_batch", held_still=True, url=[first.url, second.url])
    record_run_started(made.run, made.job)
    servers = stage.StageServers(stage.job_pool(made.job))
    first.kill()

    def batch(name: str) -> dict[str, object]:
        return stage.run_batch(
            made.settings,
            name,
            still=made.still,
            result=made.run.batch_result(name),
            workdir=made.run.root,
            report=made.report(name),
            servers=servers,
        )

    assert batch("0000")["server"] == second.url
    first.start()
    time.sleep(0.6)  # its mark of failure has run out
    held = [servers.pool.acquire(avoid=first.url) for _ in range(2)]
    assert {lease.url for lease in held} == {second.url}
    assert batch("0001")["server"] == first.url
    for lease in held:
        lease.release()
    for name in made.names[2:]:
        batch(name)
    servers.close()
    assert int(video_of(made.assemble())["nb_read_frames"]) == 50
    manifest = build_manifest(made.run)
    assert manifest is not None
    phase = manifest["phases"]["comfyui"]
    assert phase["batch_servers"]["0000"] == {"url": second.url, "comfyui_version": "0.25.1"}
    assert phase["batch_servers"]["0001"] == {"url": first.url, "comfyui_version": "0.26.0"}
    assert phase["comfyui_versions"] == {first.url: "0.26.0", second.url: "0.25.1"}
    shown = render_run(manifest)  # va status
    assert f"{first.url} (0.26.0)" in shown and f"{second.url} (0.25.1)" in shown
    assert "a pool of mixed ComfyUI versions" in shown


def test_a_videos_batches_run_side_by_side_on_every_server(
    make_stage: StageFactory,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """One video's stage (scripts/comfyui_batch.py's body) on two doubles with 0.2 s prompts: its batches
    do not wait for each other, both servers run prompts at the same time, and every frame is exact."""
    first, second = (
        DoubleProcess(tmp_path / "a", step_delay=0.05),
        DoubleProcess(tmp_path / "b", step_delay=0.05),
    )
    try:
        made = make_stage(url=[first.url, second.url], params={"steps": 4})
        stage.run_batches(
            made.settings,
            still=made.still,
            generated=made.run.root / "comfyui" / "generated.json",
            workdir=made.run,
            logs=made.run.root / "logs" / "comfyui" / "batches",
            pool=stage.job_pool(made.job),
        )
        stats = [first.stats(), second.stats()]
    finally:
        for double in (first, second):
            assert double.process is not None
            double.process.terminate()
            double.process.wait(timeout=10)
    assert all(s["prompts"] for s in stats)
    assert len(stats[0]["prompts"]) + len(stats[1]["prompts"]) == len(made.names) == 7
    # The two servers' windows (first prompt's start to last prompt's end) overlap: side by side.
    assert (
        stats[0]["first_began"] < stats[1]["last_ended"] and stats[1]["first_began"] < stats[0]["last_ended"]
    )
    servers = {made.json(f"comfyui/batches/{n}.json")["server"] for n in made.names}
    assert servers == {first.url, second.url}
    assert int(video_of(made.assemble())["nb_read_frames"]) == 50


def test_a_pool_fails_only_when_no_server_takes_the_batch(
    make_stage: StageFactory,  # noqa: F811 - the fixture imported above
    doubles: list[DoubleProcess],
) -> None:
    first, second = doubles
    made = make_stage("held_start_batch", held_still=True, url=[first.url, second.url], unavailable_seconds=0)
    first.kill()
    second.kill()
    with pytest.raises(VaError) as error:
        made.batch("0000")
    assert error.value.code == ExitCode.COMFYUI_UNAVAILABLE
    assert f"every server of the pool ({first.url}, {second.url})" in error.value.message
    served = {a["server"] for a in made.attempts("0000")}
    assert served == {first.url, second.url}
    assert json.loads(made.run.plan.read_text())["comfyui"]["batches"]


def test_snakemake_runs_two_comfyui_jobs_a_slot_of_the_pool(files: Media, tmp_path: Path) -> None:
    """``resources: comfyui`` follows the pool (two jobs for each prompt va keeps at a server, its slots
    and one queued: one with its prompt there, one waiting), the profile's other resources kept; a
    profile may name the pool in its ``config:``."""
    pool = ["http://a:1", {"url": "http://b:1", "slots": 2}]
    job = load_job(files.job(comfyui={"workflow_ids": ["held_start_batch"], "url": pool}))
    assert comfyui_resources([job], RunOptions(tmp_path)) == ["--resources", "lipsync=1", "comfyui=10"]
    profile = tmp_path / "farm"
    profile.mkdir()
    servers = "[{url: 'http://c:1', slots: 3}, 'http://d:1']"
    (profile / "config.yaml").write_text(f'resources: [gpu_mem=8]\nconfig: ["comfyui_servers={servers}"]\n')
    plain = load_job(files.job(comfyui={"workflow_ids": ["held_start_batch"]}))
    assert profile_config(profile)["comfyui_servers"][0] == {"url": "http://c:1", "slots": 3}
    options = RunOptions(tmp_path, profile=str(profile))
    assert comfyui_resources([plain], options) == ["--resources", "gpu_mem=8", "comfyui=12"]
    assert comfyui_resources([load_job(files.job())], options) == []  # no ComfyUI stage


def dry_run_jobs(printed: str) -> dict[tuple[str, str], dict[str, str]]:
    """The jobs of a Snakemake dry run, by (rule, video): the lines it prints of each (``input``,
    ``priority``, ``threads``, ...)."""
    jobs = {}
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", printed, re.MULTILINE):
        lines = dict(line.strip().split(": ", 1) for line in body.splitlines() if ": " in line)
        video = lines.get("wildcards", "name=").split("name=")[1].split(",")[0]
        jobs[rule, video] = lines
    return jobs


def test_a_comfyui_stage_holds_no_core_and_starts_as_soon_as_its_inputs_exist(
    workflows: Path,
    files: Media,
) -> None:
    """The graph of a batch on a pool (Snakemake's dry run): a ComfyUI job holds no core of the machine and
    runs before the other ready jobs, the still before the audio; a template that binds no start image
    (text to image) waits for no still."""
    folder = files.root / "jobs"
    folder.mkdir()
    for name, template in (("text", "vidax_text2img_frames"), ("held", "held_start_batch")):
        comfyui = {"workflow_ids": [template], "url": ["http://127.0.0.1:9", "http://127.0.0.1:10"]}
        document = json.loads(files.job(comfyui=comfyui).read_text())
        document["input"] = {"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png")}
        (folder / f"{name}.json").write_text(json.dumps(document))
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--dry-run"]
    directory = ["--directory", str(files.root / "out"), "--config", f"batch={folder}", "--cores", "2"]
    dry = subprocess.run([*snakemake, *directory], capture_output=True, text=True, check=False)
    assert dry.returncode == 0, dry.stderr[-2000:]
    jobs = dry_run_jobs(dry.stdout)
    for video in ("text", "held"):
        comfyui = jobs["comfyui_batch", video]
        assert (comfyui["priority"], comfyui["threads"]) == ("2", "0")
        assert jobs["hold_start_frame", video]["priority"] == "1"
        assert "priority" not in jobs["prepare_audio", video]  # 0: after the still and the ComfyUI job
    assert "input" not in jobs["comfyui_batch", "text"]
    assert jobs["comfyui_batch", "held"]["input"] == "held/frames/still.png"


def test_a_stage_starts_its_own_server_and_leaves_no_process(
    make_stage: StageFactory,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """A declared start: the stage starts a double on a free port, records how long it took to answer,
    makes every batch there, and stops it: nothing of it is left running."""
    made = make_stage("held_start_batch", held_still=True)
    command = [sys.executable, str(DOUBLE), "--port", "{port}", "--root", str(tmp_path / "node")]
    settings = PoolSettings((), ServerStart(tuple(command), start_timeout_seconds=30, stop_seconds=5))
    logs = made.run.root / "logs" / "comfyui" / "batches"
    generated = made.run.root / "comfyui" / "generated.json"
    stage.run_batches(
        made.settings,
        still=made.still,
        generated=generated,
        workdir=made.run,
        logs=logs,
        pool=settings,
    )
    started = [e for e in read_events(made.run.events) if e["kind"] == "comfyui_server_started"]
    assert len(started) == 1 and started[0]["seconds"] > 0 and started[0]["comfyui_version"] == "0.26.0"
    served = {a["server"] for a in made.attempts() if a["outcome"] == "succeeded"}
    assert served == {started[0]["url"]} and len(made.attempts()) == 2 * len(made.names)
    assert ProcessId.of(started[0]["pid"]) is None
    assert int(video_of(made.assemble())["nb_read_frames"]) == 50


def test_a_job_that_starts_its_server_asks_for_what_its_template_declares(workflows: Path) -> None:
    """The shipped SDXL template declares a GPU; the weight-free one none; a job without a start of its
    own asks for little."""
    start = ServerStart(("python", "main.py", "--port", "{port}"))
    sdxl = load_workflow("vidax_text2img_frames").resources
    assert job_request(start, sdxl) == JobRequest(cpus=4, mem_mb=16000, gpus=1, runtime=180)
    held = job_request(start, load_workflow("held_start_batch").resources)
    assert (held.gpus, held.mem_mb) == (0, 4000)
    assert job_request(None, sdxl) == TALKING and job_request(start, None) == SERVING


def made_by(url: str, out: Path) -> bool:
    """Whether a batch record under a batch's ``out`` folder names the server at ``url`` as its maker."""
    for record in out.glob("*/comfyui/batches/*.json"):
        try:
            if json.loads(record.read_text()).get("server") == url:
                return True
        except (OSError, ValueError):
            continue  # a record being written
    return False


@pytest.mark.whole_run
def test_a_batch_spreads_over_the_pool_and_survives_a_server_killed_mid_batch(
    files: Media, tmp_path: Path
) -> None:
    """``va batch`` of three videos on two doubles (0.4 s prompts): both servers take prompts; the first is
    killed after its second prompt, and the batch still ends with exit 0 and every final exact."""
    first, second = (
        DoubleProcess(tmp_path / "a", step_delay=0.1),
        DoubleProcess(tmp_path / "b", step_delay=0.1),
    )
    folder = files.root / "jobs"
    folder.mkdir()
    comfyui = {
        "workflow_ids": ["vidax_text2img_frames"],
        "url": [first.url, second.url],
        "batch_size": 10,
        "params": {"width": 64, "height": 48, "steps": 4},
    }
    for name in ("one", "two", "three"):
        document = json.loads(files.job(comfyui=comfyui).read_text())
        document["input"] = {"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png")}
        (folder / f"{name}.json").write_text(json.dumps(document))
    out = files.root / "out"
    batch = subprocess.Popen(
        [*VA, "batch", str(folder), "--out", str(out), "--cores", "4", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Killed once a batch it made is recorded and it holds the next prompt: a kill right after it
        # was sent two prompts could come before either ended, leaving every batch to the second server.
        deadline = time.monotonic() + 300
        while not made_by(first.url, out) or len(first.stats()["prompts"]) < 2:
            assert time.monotonic() < deadline and batch.poll() is None, "the first server made no batch"
            time.sleep(0.05)
        first.kill()
        got, err = batch.communicate(timeout=600)
    finally:
        if batch.poll() is None:
            batch.kill()
        for double in (first, second):
            if double.process is not None and double.process.poll() is None:
                double.process.terminate()
    assert batch.returncode == 0, err[-2000:]
    assert {row["status"] for row in json.loads(got)["jobs"]} == {"succeeded"}
    served: dict[str, int] = {}
    for name in ("one", "two", "three"):
        assert ffprobe_streams(out / name / "final.mp4")["video"]["nb_read_frames"] == "50"
        phase = json.loads((out / name / "manifest.json").read_text())["phases"]["comfyui"]
        for entry in phase["batch_servers"].values():
            served[entry["url"]] = served.get(entry["url"], 0) + 1
    assert served.get(first.url, 0) >= 1 and served.get(second.url, 0) >= 1, served
    assert sum(served.values()) == 15
