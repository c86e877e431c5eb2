"""A real single-node Slurm (munge, slurmctld, slurmd on 127.0.0.1, 2 CPUs) with the stock profiles/slurm:
resources that follow the lip-sync provider, jobs the cluster can never start or refuses or that are
cancelled by hand (one batch), stopping a batch with SIGINT (SIGTERM: tests/test_slurm_comfyui.py), a
re-run stopped while it waits for an earlier run's job, a re-run after a kill, a no-op re-run, one
cluster job per video. Each whole batch costs tens of seconds on the test node: a point is proved in a
batch another test starts anyway where it can be."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, VA, CliRunner, Media, ffprobe_streams, slow_ffmpeg
from va.batch import SELECTION
from va.errors import ExitCode
from va.processes import descendants

START = Path(__file__).parent / "slurm" / "start-slurm.sh"

# `make test` runs these beside the other tests, one after the other in a pytest of their own
# (`make test-fast` leaves them out), Slurm started meanwhile in the background.
pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def slurm() -> None:
    # Installing Slurm from Debian's packages takes minutes on a fresh machine: a generous bound.
    done = subprocess.run(["bash", str(START)], capture_output=True, text=True, check=False, timeout=840)
    if done.returncode == 2:
        pytest.skip(f"SLURM TEST SKIPPED: Slurm cannot be installed here: {done.stderr.strip()}")
    assert done.returncode == 0, f"Slurm did not start: {done.stderr.strip()}"


def slurm_jobs(workdir: Path) -> list[dict[str, str]]:
    """Every job slurmctld still knows (MinJobAge keeps ended ones an hour) that ran in ``workdir``."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True).stdout
    jobs = [
        dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.splitlines() if line.strip()
    ]
    return [job for job in jobs if job.get("WorkDir") == str(workdir)]


def queued(workdir: Path) -> list[str]:
    """The ids of the jobs in ``squeue`` (pending, running, completing) that run in ``workdir``."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%Z"], capture_output=True, text=True, check=True).stdout
    return [line.split("|")[0] for line in out.splitlines() if line.split("|")[1:] == [str(workdir)]]


def wait_for(what: str, condition: Callable[[], Any], seconds: float) -> Any:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {seconds} s")


def seconds_between(job: dict[str, str], start: str, end: str) -> float:
    return (datetime.fromisoformat(job[end]) - datetime.fromisoformat(job[start])).total_seconds()


def batch_folder(files: Media, jobs: dict[str, dict[str, Any]]) -> Path:
    """A batch folder with one job file a name, sharing the 2 s tone and the still."""
    folder = files.root / "jobs"
    folder.mkdir()
    for name, sections in jobs.items():
        document = json.loads(files.job(**sections).read_text())
        document["input"] = {"audio": str(files.root / "voice.wav"), "start": str(files.root / "start.png")}
        (folder / f"{name}.json").write_text(json.dumps(document))
    return folder


def summary(out: str) -> dict[str, dict[str, Any]]:
    return {row["job"]: row for row in json.loads(out)["jobs"]}


def start_batch(
    folder: Path, out: Path, state: Path, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``va batch`` as a process of its own (it gets real signals), with the stock Slurm profile."""
    return subprocess.Popen(
        [*VA, "batch", str(folder), "--out", str(out), "--profile", "slurm", "--json", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VA_STATE_DIR": str(state), **(env or {})},
    )


def stop(batch: subprocess.Popen[str], signum: signal.Signals, out: Path) -> str:
    """Send ``signum`` to ``va batch``: within 10 s no job with working directory ``out`` is in ``squeue``,
    and it exits 130. Returns its stderr."""
    batch.send_signal(signum)
    stopped = time.monotonic()
    wait_for("the queue empty of the batch's jobs", lambda: not queued(out), 10)
    assert time.monotonic() - stopped <= 10
    _, err = batch.communicate(timeout=60)
    assert batch.returncode == ExitCode.INTERRUPTED, err
    return err


def rules_of(events: Path, kind: str, since: int = 0) -> list[str]:
    """The rules of the events of ``kind`` in a video's event log, from line ``since`` on."""
    lines = events.read_text().splitlines()[since:] if events.exists() else []
    return [event["rule"] for event in map(json.loads, lines) if event.get("kind") == kind]


def test_a_video_stopped_by_sigint_keeps_what_its_finished_rules_made(
    slurm: None, files: Media, state_dir: Path, va_cli: CliRunner
) -> None:
    """SIGINT while a video's cluster job (its group: audio, still, encode) encodes: the queue is empty
    within 10 s, exit 130, and the padded audio and the still its finished rules made are still there
    (Snakemake removes the outputs of every rule of a failed group job): the re-run runs the encode only."""
    folder = batch_folder(files, {"one": {}})
    out = files.root / "out"
    slow = slow_ffmpeg(files.root, 60, only="one/.encode-final.mp4")
    batch = start_batch(folder, out, state_dir.parent, env={"FFMPEG": str(slow)})
    events = out / "one" / "logs" / "events.jsonl"
    try:
        wait_for("the encode started", lambda: "encode" in rules_of(events, "rule_started"), 180)
        assert sorted(rules_of(events, "rule_finished")) == ["hold_start_frame", "prepare_audio"]
        stop(batch, signal.SIGINT, out)
    finally:
        batch.kill()
        batch.wait()
    kept = ["prepare/padded.wav", "prepare/padded.m4a", "frames/still.png", "frames/still.mp4"]
    assert [path for path in kept if not (out / "one" / path).is_file()] == []
    seen = len(events.read_text().splitlines())
    again = va_cli("batch", folder, "--out", out, "--profile", "slurm", "--json")
    assert again.code == 0, again.err + (out / "logs" / "snakemake.log").read_text()[-3000:]
    assert rules_of(events, "rule_started", since=seen) == ["encode"]
    assert int(ffprobe_streams(out / "one" / "final.mp4")["video"]["nb_read_frames"]) == 50


def kill_hard(batch: subprocess.Popen[str]) -> None:
    """SIGKILL Snakemake first, then every other process of the batch: nothing gets to cancel a job.

    The whole batch is frozen (SIGSTOP) before the first kill: a process of it that outlived Snakemake by
    a few milliseconds could otherwise cancel the jobs (seen: scancel 20 ms after the kill)."""
    below = descendants(batch.pid)
    batch.send_signal(signal.SIGSTOP)
    for process in below:
        process.send(signal.SIGSTOP)
    for process in below:
        with contextlib.suppress(OSError):
            if b"snakemake" in Path(f"/proc/{process.pid}/cmdline").read_bytes():
                process.send(signal.SIGKILL)
    for process in below:
        process.send(signal.SIGKILL)
    batch.kill()
    batch.communicate()


def stop_while_waiting(folder: Path, out: Path, state: Path, name: str) -> str:
    """A job of an earlier run still running in ``out`` (submitted here as the plugin submits video
    ``name``'s group: working directory ``out``, the group's comment; a sleep, so it runs until
    cancelled): a re-run waits for it and gets SIGINT. It cancels the job and says so, exits 130 naming
    the command that continues, and no job of ``out`` is in ``squeue`` 10 s after the signal. Returns
    the job's id."""
    comment = f"rule_{name}@video_encode_hold_start_frame_lipsync_prepare_audio"
    leftover = subprocess.run(
        ["sbatch", "--parsable", "-D", str(out), "--comment", comment, "-c", "1", "--wrap", "sleep 300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    wait_for(
        "the leftover running",
        lambda: [job["JobState"] for job in slurm_jobs(out) if job["JobId"] == leftover] == ["RUNNING"],
        60,
    )
    log = out / "logs" / "snakemake.log"
    rerun = start_batch(folder, out, state)
    try:
        waiting = f"va: waiting for 1 Slurm job an earlier run left running in {out}: {leftover}"
        wait_for(
            "the re-run waiting for the leftover", lambda: log.exists() and waiting in log.read_text(), 60
        )
        err = stop(rerun, signal.SIGINT, out)
    finally:
        rerun.kill()
        rerun.wait()
    assert waiting in err, err
    assert f"va: stopped: cancelled the Slurm job it waited for in {out}: {leftover}" in err, err
    again = f"va batch {folder} --out {out} --profile slurm"
    assert f"va: interrupted (0 of 3 job(s) succeeded); continue with: {again}" in err, err
    (cancelled,) = [job for job in slurm_jobs(out) if job["JobId"] == leftover]
    assert cancelled["JobState"] == "CANCELLED", cancelled
    return leftover


def test_a_re_run_after_a_kill_runs_no_rule_twice_and_a_no_op_re_run_is_quick(
    slurm: None, files: Media, state_dir: Path, va_cli: CliRunner
) -> None:
    """Three videos with the audiogram's lip-sync, each one cluster job (the group of all its rules). First
    a re-run is stopped while it waits for an earlier run's job (stop_while_waiting); then the batch runs,
    is killed, and its re-run finishes it."""
    audiogram = {"lipsync": {"enable": True, "provider": "audiogram"}}
    names = ("one", "two", "three")
    folder = batch_folder(files, dict.fromkeys(names, audiogram))
    out = files.root / "out"
    out.mkdir()
    stopped = stop_while_waiting(folder, out, state_dir.parent, "one")
    batch = start_batch(folder, out, state_dir.parent)
    try:
        # On 2 CPUs two videos' jobs (1 CPU each) run while the third waits. A job seen waiting while
        # another runs is held at once, in the same look at the queue, so it still waits when the re-run
        # starts (a job of seconds would otherwise start and end first; holding it only once all three
        # were submitted lost that race on a loaded machine). The kill comes once all three are submitted.
        held: set[str] = set()

        def all_submitted_one_held() -> bool:
            jobs = [job for job in slurm_jobs(out) if job["JobId"] != stopped]
            if any(job["JobState"] == "RUNNING" for job in jobs):
                for job in jobs:
                    if job["JobState"] == "PENDING" and job["JobId"] not in held:
                        hold = ["scontrol", "hold", job["JobId"]]
                        # it may have started meanwhile: then it is not held
                        if subprocess.run(hold, capture_output=True, check=False).returncode == 0:
                            held.add(job["JobId"])
            return len(jobs) == 3 and bool(held)

        wait_for("the three jobs submitted, one running, one held", all_submitted_one_held, 120)
    finally:
        kill_hard(batch)
    after_kill = slurm_jobs(out)
    pending = [job["JobId"] for job in after_kill if job["JobState"] == "PENDING"]
    states = [(job["JobId"], job["JobState"], job.get("Reason"), job.get("RunTime")) for job in after_kill]
    assert pending and queued(out), f"nothing left pending after the kill (held {held}): {states}"

    again = va_cli("batch", folder, "--out", out, "--profile", "slurm", "--json")
    assert again.code == 0, again.err + (out / "logs" / "snakemake.log").read_text()[-3000:]
    cancelled = "1 Slurm job" if len(pending) == 1 else f"{len(pending)} Slurm jobs"
    assert f"va: cancelled {cancelled} an earlier run left pending" in again.err, again.err
    for name in names:
        assert int(ffprobe_streams(out / name / "final.mp4")["video"]["nb_read_frames"]) == 50
        phases = json.loads((out / name / "manifest.json").read_text())["phases"]
        assert len({i for phase in phases.values() for i in phase.get("slurm_job_ids", [])}) == 1, phases
    # Every rule (here: every video's group job) ran once; a job cancelled before it started ran nothing,
    # and the one cancelled by the stop was no run of the batch's.
    started = Counter(
        job["Comment"] for job in slurm_jobs(out) if job["RunTime"] != "00:00:00" and job["JobId"] != stopped
    )
    assert started and set(started.values()) == {1}, started
    group = "rule_{}@video_encode_hold_start_frame_lipsync_prepare_audio"
    assert set(started) == {group.format(name) for name in names}

    began = time.monotonic()
    noop = va_cli("batch", folder, "--out", out, "--profile", "slurm", "--json")
    seconds = time.monotonic() - began
    assert noop.code == 0, noop.err
    assert seconds < 10, f"a no-op re-run took {seconds:.1f} s"


def test_snakemake_with_the_profile_directly(slurm: None, files: Media) -> None:
    """Plain snakemake, one job with a camera move and captions, the stock profile: the video is one cluster
    job (group ``video``) of 1 CPU, and the captions one of their own."""
    job = files.job(
        motion={"strength": 0.5, "camera": "push_in"}, timeline=[{"start": 0, "end": 1, "caption": "hi"}]
    )
    out = files.root / "direct"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "profiles/slurm",
            "--workflow-profile",
            "none",
            "--directory",
            str(out),
            "--config",
            f"job={job}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_status"] == "succeeded"
    assert ffprobe_streams(out / "final.mp4")["video"]["nb_read_frames"] == "50"
    jobs = {job["Comment"]: job for job in slurm_jobs(out)}
    assert sorted(jobs) == ["rule_captions", "rule_video_camera_motion_encode_hold_start_frame_prepare_audio"]
    group = jobs["rule_video_camera_motion_encode_hold_start_frame_prepare_audio"]
    assert (group["NumCPUs"], group["JobState"]) == ("1", "COMPLETED"), group
    for phase in ("prepare", "motion"):
        assert manifest["phases"][phase]["slurm_job_ids"] == [group["JobId"]]


def test_a_refused_command_never_touches_a_live_run_and_held_stills_run_side_by_side(
    slurm: None, files: Media, va_cli: CliRunner
) -> None:
    """Plain snakemake with the profile runs three held stills in OUT, its pending jobs held: `va batch`
    into OUT and `va run --resume` of one of its videos are refused (exit 30, one line naming its pid)
    before they touch anything: its jobs are not cancelled, no file of va's is written, and it finishes.
    Each video's job asked for 1 CPU, so the 2-CPU node ran two of them at once."""
    folder = batch_folder(files, {"one": {}, "two": {}, "three": {}})
    out = files.root / "out"
    live = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "profiles/slurm",
            "--workflow-profile",
            "none",
            "--directory",
            str(out),
            "--config",
            f"batch={folder}",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            "a job of the live run pending",
            lambda: any(job["JobState"] == "PENDING" for job in slurm_jobs(out)),
            120,
        )
        pending = [job["JobId"] for job in slurm_jobs(out) if job["JobState"] == "PENDING"]
        subprocess.run(["scontrol", "hold", *pending], capture_output=True, check=False)
        # A job may have started between the listing and the hold: only those still pending are held.
        pending = [
            job["JobId"]
            for job in slurm_jobs(out)
            if job["JobId"] in pending and job["JobState"] == "PENDING"
        ]
        refusal = (
            f"va: error: {out} is in use by a running snakemake (pid {live.pid}); leaving it alone "
            "(wait for it to end, or stop it, then call again)"
        )
        batch = va_cli("batch", folder, "--out", out, "--profile", "slurm")
        assert (batch.code, batch.err.strip().splitlines()) == (ExitCode.OUTPUT_EXISTS, [refusal])
        run = va_cli("run", folder / "one.json", "--workdir", out / "one", "--resume", "--profile", "slurm")
        assert (run.code, run.err.strip().splitlines()) == (ExitCode.OUTPUT_EXISTS, [refusal])
        written = [out / SELECTION, out / "logs" / "snakemake.log", out / "logs" / ".run.lock"]
        written += [out / "one" / "logs" / ".run.lock"]
        assert [path for path in written if path.exists()] == []
        assert [job["JobState"] for job in slurm_jobs(out) if job["JobId"] in pending] == ["PENDING"] * len(
            pending
        )
        assert "CANCELLED" not in {job["JobState"] for job in slurm_jobs(out)}
        subprocess.run(["scontrol", "release", *pending], capture_output=True, check=False)
        _, err = live.communicate(timeout=600)
    finally:
        live.kill()
        live.wait()
    assert live.returncode == 0, err[-3000:]
    jobs = slurm_jobs(out)
    assert sorted(job["JobState"] for job in jobs) == ["COMPLETED"] * 3, jobs
    assert [job["NumCPUs"] for job in jobs] == ["1"] * 3, jobs
    for name in ("one", "two", "three"):
        assert int(ffprobe_streams(out / name / "final.mp4")["video"]["nb_read_frames"]) == 50
    spans = sorted(
        (datetime.fromisoformat(job["StartTime"]), datetime.fromisoformat(job["EndTime"])) for job in jobs
    )
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), spans


def test_slurms_own_reason_reaches_the_summary_and_the_manifest(
    slurm: None, files: Media, state_dir: Path, tmp_path: Path
) -> None:
    """One batch, --keep-going, four videos the cluster fails each its own way, each in the summary and
    the manifest with one line:
    - ``huge``: a lip-sync tool declaring 64 CPUs on a 2-CPU partition; its own cluster job asks for
      exactly that, is cancelled within seconds of its submission (va's watch), and the video fails with
      exit 21 naming the job, its request and the limit (its cheap rules ran as jobs of their own: a
      lip-sync tool's video has no group);
    - ``gpu``: a tool declaring a GPU on a cluster without any: sbatch refuses it, exit 21, Slurm's words;
    - ``refused``: a video whose job (its group) sbatch refuses (an audiogram asking 900 GB): exit 21, the
      request, the partition's limits and Slurm's words;
    - ``by_hand``: its job cancelled by hand (scancel) while it encodes: interrupted (130), said so, and it
      keeps what its finished rules made."""
    providers = json.loads((REPO / "config" / "lipsync.providers.json").read_text())
    tool = {"type": "command", "argv": ["true"], "output": "{output}"}
    providers["providers"] |= {
        "huge": {**tool, "resources": {"cpus": 64, "mem_mb": 700, "gpus": 0, "runtime": 20}},
        "gpu": {**tool, "resources": {"cpus": 1, "mem_mb": 500, "gpus": 1, "runtime": 10}},
        "huge_audiogram": {
            **providers["providers"]["audiogram"],
            "resources": {"cpus": 1, "mem_mb": 900000, "gpus": 0, "runtime": 30},
        },
    }
    config = tmp_path / "providers.json"
    config.write_text(json.dumps(providers))
    folder = batch_folder(
        files,
        {
            "huge": {"lipsync": {"enable": True, "provider": "huge"}},
            "gpu": {"lipsync": {"enable": True, "provider": "gpu"}},
            "refused": {"lipsync": {"enable": True, "provider": "huge_audiogram"}},
            "by_hand": {},
        },
    )
    out = files.root / "out"
    slow = slow_ffmpeg(files.root, 60, only="by_hand/.encode-final.mp4")
    env = {"FFMPEG": str(slow), "VIDAX_LIPSYNC_CONFIG": str(config)}
    batch = start_batch(folder, out, state_dir.parent, "--keep-going", env=env)
    events = out / "by_hand" / "logs" / "events.jsonl"
    try:
        wait_for("by_hand's encode started", lambda: "encode" in rules_of(events, "rule_started"), 180)
        (job,) = [job for job in slurm_jobs(out) if "by_hand@video" in job["Comment"]]
        subprocess.run(["scancel", job["JobId"]], check=True)
        output, err = batch.communicate(timeout=300)
    finally:
        batch.kill()
        batch.wait()
    log = (out / "logs" / "snakemake.log").read_text()
    assert batch.returncode == ExitCode.BATCH_INCOMPLETE, err + log[-3000:]
    rows = summary(output)
    for row in rows.values():
        # The cluster's lines, on the graph's stderr (its log); refused and by_hand's also on va's.
        where = log if row["job"] in ("huge", "gpu") else err + log
        assert "\n" not in row["message"] and f"va: {row['message']}" in where, row
        manifest = json.loads((out / row["job"] / "manifest.json").read_text())
        assert manifest["exit_status"]["message"] == row["message"]
    for name in ("huge", "gpu", "refused"):
        assert (rows[name]["status"], rows[name]["exit_code"]) == ("failed", ExitCode.CLUSTER_CANNOT_RUN), (
            rows
        )

    jobs = slurm_jobs(out)
    (huge,) = [job for job in jobs if job["Comment"] == "rule_lipsync_wildcards_huge"]
    assert (huge["NumCPUs"], huge["MinMemoryNode"], huge["TimeLimit"]) == ("64", "700M", "00:20:00"), huge
    assert (huge["JobState"], huge["RunTime"]) == ("CANCELLED", "00:00:00"), huge
    assert seconds_between(huge, "SubmitTime", "EndTime") <= 20, huge
    # The tools' videos' cheap rules ran as jobs of their own: a lip-sync tool's video has no group.
    cheap = {
        f"rule_{rule}_wildcards_{name}"
        for name in ("gpu", "huge")
        for rule in ("hold_start_frame", "prepare_audio")
    }
    tools = [job["Comment"] for job in jobs if job["Comment"].endswith(("_wildcards_gpu", "_wildcards_huge"))]
    assert sorted(tools) == sorted([*cheap, huge["Comment"]])
    message = rows["huge"]["message"]
    assert f"Slurm job {huge['JobId']} (rule lipsync [huge])" in message, message
    assert "64 CPUs" in message and "at most 2 CPUs" in message and "PartitionConfig" in message, message
    message = rows["gpu"]["message"]
    assert message.startswith("Slurm refused the job of rule lipsync [gpu]: it asks for 1 CPUs, 500 MB"), (
        message
    )
    assert "1 GPUs" in message and "no GPUs" in message and "Invalid generic resource" in message, message

    refused, by_hand = rows["refused"], rows["by_hand"]
    assert refused["message"].startswith(
        "Slurm refused the job of group refused@video: it asks for 1 CPUs, 900000 MB memory"
    ), refused
    assert "partition va (up) has nodes of at most 2 CPUs" in refused["message"], refused
    assert "Memory specification can not be satisfied" in refused["message"], refused
    assert (by_hand["status"], by_hand["exit_code"]) == ("interrupted", ExitCode.INTERRUPTED), by_hand
    assert by_hand["message"].startswith(
        f"Slurm job {job['JobId']} (group by_hand@video) was cancelled outside va (scancel) after "
    ), by_hand
    assert by_hand["message"].endswith("; continue with the same va batch (or snakemake) command"), by_hand
    kept = ["prepare/padded.wav", "frames/still.mp4"]
    assert [path for path in kept if not (out / "by_hand" / path).is_file()] == []
