"""va/cluster_watch.py without Snakemake or a cluster: what a graph's main Snakemake records for a cluster job
that failed for the cluster's reason or can never start, and what it sets up when the graph runs on Slurm.
Snakemake's jobs are stood in for by objects with the executor interface's fields."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import Media
from va import cluster_watch, slurm
from va.cluster_watch import ClusterWatch, cluster_job_name, finished_in_attempt
from va.errors import ExitCode
from va.job import load_job
from va.lifecycle import GraphRun
from va.plan import plan_run
from va.slurm import ClusterJob
from va.tracking import failure_of_attempt, record
from va.workdir import Workdir

AGAIN = "the same va batch (or snakemake) command"
CANCELLED = "SLURM-job '12' failed, SLURM status is: 'CANCELLED'. Detailed failure reason unavailable."


def rule_job(rule: str, **wildcards: str) -> SimpleNamespace:
    """A Snakemake job of ``rule`` as an executor hands it over."""
    return SimpleNamespace(
        rule=SimpleNamespace(name=rule), wildcards_dict=wildcards, is_group=lambda: False, jobs=None
    )


def group_job(name: str, *rules: str) -> SimpleNamespace:
    """The group job of video ``name``'s ``rules``."""
    return SimpleNamespace(
        jobs=[rule_job(rule, name=name) for rule in rules], is_group=lambda: True, groupid=f"{name}@video"
    )


def started(files: Media, *names: str) -> tuple[Path, ClusterWatch]:
    """A batch graph of jobs ``names`` in ``out``, its runs started as its ``onstart`` does, and its watch."""
    jobs = {name: load_job(files.job(f"{name}.json")) for name in names}
    root = files.root / "out"
    plans = {name: plan_run(job) for name, job in jobs.items()}
    graph = GraphRun(root=root, jobs=jobs, plan_for=plans.__getitem__, planned=False, batch=True)
    graph.started()
    return root, ClusterWatch.of(root, jobs, graph.again)


def finish(run: Workdir, rule: str, phase: str) -> None:
    """What a rule records when it starts, and when its outputs are published."""
    for kind in ("rule_started", "rule_finished"):
        record(run, phase, "info", f"{rule}: {kind}", kind=kind, rule=rule, phase=phase)


@pytest.fixture
def scontrol(monkeypatch: pytest.MonkeyPatch) -> None:
    """``scontrol show job 12``: a job cancelled after 7 s on node3; no accounting."""
    shown = "JobId=12 JobState=CANCELLED Reason=None RunTime=00:00:07 NodeList=node3 ExitCode=0:15\n"

    def run(argv: Sequence[str], timeout: float = 30.0) -> str | None:
        return shown if argv[0] == "scontrol" else None

    monkeypatch.setattr(slurm, "_run", run)


def test_a_group_cancelled_by_hand_is_recorded_for_its_first_unfinished_rule(
    files: Media, scontrol: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root, watch = started(files, "intro", "outro")
    intro = Workdir(root / "intro")
    finish(intro, "prepare_audio", "prepare")
    finish(intro, "hold_start_frame", "prepare")
    job = group_job("intro", "encode", "hold_start_frame", "lipsync", "prepare_audio")
    assert [finished_in_attempt(j, root) for j in job.jobs] == [False, True, False, True]
    error = watch.report_cluster_failure(job, CANCELLED)
    line = (
        "Slurm job 12 (group intro@video) was cancelled outside va (scancel) after 00:00:07 of running; "
        f"continue with {AGAIN}"
    )
    assert error is not None and (error.code, error.message) == (ExitCode.INTERRUPTED, line)
    assert capsys.readouterr().err == f"va: {line}\n"
    recorded = failure_of_attempt(intro)
    assert recorded is not None and recorded["message"] == line
    events = [json.loads(event) for event in intro.events.read_text().splitlines()]
    assert events[-1]["kind"] == "rule_failed" and events[-1]["rule"] == "lipsync"
    assert failure_of_attempt(Workdir(root / "outro")) is None  # the other video is not touched


def test_a_rules_own_error_a_message_not_the_clusters_and_another_graphs_job_are_left_alone(
    files: Media, scontrol: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root, watch = started(files, "intro")
    intro = Workdir(root / "intro")
    assert watch.report_cluster_failure(group_job("intro", "encode"), "Command 'ffmpeg' failed") is None
    assert watch.report_cluster_failure(group_job("elsewhere", "encode"), CANCELLED) is None
    own = {"kind": "rule_failed", "rule": "encode", "phase": "encode"}
    record(intro, "encode", "error", "encode: bad", error={"code": 50, "message": "encode: bad"}, **own)
    assert watch.report_cluster_failure(rule_job("encode", name="intro"), CANCELLED) is None
    recorded = failure_of_attempt(intro)
    assert recorded is not None and recorded["message"] == "encode: bad"
    assert capsys.readouterr().err == ""


def test_a_job_that_can_never_start_fails_its_video_with_exit_21(
    files: Media, capsys: pytest.CaptureFixture[str]
) -> None:
    root, watch = started(files, "intro")
    job = ClusterJob(
        "63", "PENDING", "PartitionConfig", "rule_lipsync_wildcards_intro", "va", 64, "700M", "20:00"
    )
    watch.report_never_runs(job, "Slurm job 63 (rule lipsync [intro]) can never start: ...; cancelled")
    unknown = ClusterJob(
        "64", "PENDING", "PartitionConfig", "rule_encode_wildcards_other", "va", 64, "1G", "1:00"
    )
    watch.report_never_runs(unknown, "Slurm job 64 (rule encode [other]) can never start: ...; cancelled")
    recorded = failure_of_attempt(Workdir(root / "intro"))
    assert recorded is not None and recorded["code"] == ExitCode.CLUSTER_CANNOT_RUN
    assert recorded["message"].startswith("Slurm job 63 (rule lipsync [intro]) can never start")
    assert capsys.readouterr().err.splitlines() == [
        "va: Slurm job 63 (rule lipsync [intro]) can never start: ...; cancelled",
        "va: Slurm job 64 (rule encode [other]) can never start: ...; cancelled",
    ]
    assert not (root / "other").exists()


def test_names_of_rule_jobs(tmp_path: Path) -> None:
    assert cluster_job_name(rule_job("lipsync", name="intro")) == "rule lipsync [intro]"
    assert (
        cluster_job_name(rule_job("comfyui_batch", name="a", batch="0003")) == "rule comfyui_batch [a_0003]"
    )
    assert cluster_job_name(rule_job("captions")) == "rule captions"
    assert not finished_in_attempt(rule_job("all"), tmp_path)  # not a rule of a video


def test_on_slurm_the_watch_hooks_into_the_executor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With the slurm executor: the queue watched, the errors heard, the job command and the status checks
    changed (va.lifecycle); with any other executor nothing."""
    watched: list[Path] = []
    monkeypatch.setattr(cluster_watch.NeverRunsWatch, "start", lambda self: watched.append(self.workdir))
    heard: list[Any] = []
    executor = SimpleNamespace(
        report_job_error=lambda job_info, msg=None, **kwargs: heard.append(msg),
        array_jobs=set(),
        additional_general_args=lambda: "--executor slurm-jobstep --jobs 1",
        next_seconds_between_status_checks=40,
    )

    def workflow(plugin: str) -> SimpleNamespace:
        return SimpleNamespace(
            executor_plugin=SimpleNamespace(name=plugin),
            scheduler=SimpleNamespace(_executor=executor),
            remote_execution_settings=SimpleNamespace(seconds_between_status_checks=3),
        )

    watch = ClusterWatch.of(tmp_path, ["intro"], AGAIN)
    assert not watch.start(workflow("local"))
    assert executor.additional_general_args() == "--executor slurm-jobstep --jobs 1" and watched == []
    assert watch.start(workflow("slurm"))
    assert watched == [tmp_path]
    assert executor.additional_general_args() == "--cores all"
    assert callable(getattr(executor, "sleep", None))
    executor.report_job_error(SimpleNamespace(job=rule_job("encode", name="elsewhere")), msg="gone")
    assert heard == ["gone"]  # heard by va (another graph's job: nothing recorded), handled by Snakemake
