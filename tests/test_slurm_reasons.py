"""va/slurm.py without a cluster: Slurm's own reason for a failed cluster job, from the message the slurm
executor plugin hands Snakemake (``scontrol``'s answer replaced), and a test that fails when the plugin
words it otherwise. The hooks that hand va the message are in va/lifecycle.py (tests/test_lifecycle.py)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import pytest

from va import slurm
from va.errors import ExitCode
from va.slurm import PartitionLimits, cluster_failure

AGAIN = "the same va batch (or snakemake) command"
LIMITS = PartitionLimits("va", 2, 3000, "UNLIMITED", "UP")
SHOWN = (
    "JobId=12 JobState={state} Reason=None RunTime=00:00:07 TimeLimit=00:01:00 NodeList=node3 "
    "MinMemoryNode=1000M ExitCode=0:15"
)


def scontrol(monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    """``scontrol show job 12`` answers as Slurm does for a job that ended in ``state``; no accounting."""

    def run(argv: Sequence[str], timeout: float = 30.0) -> str | None:
        return SHOWN.format(state=state) + "\n" if argv[0] == "scontrol" else None

    monkeypatch.setattr(slurm, "_run", run)
    monkeypatch.setattr(slurm, "partition_limits", lambda partition: LIMITS)


def ended(state: str) -> str:
    return f"SLURM-job '12' failed, SLURM status is: '{state}'. Detailed failure reason unavailable."


def test_a_request_sbatch_refuses_is_exit_21_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    scontrol(monkeypatch, "PENDING")
    message = (
        "SLURM sbatch failed. The error message was 'sbatch: error: Memory specification can not be "
        "satisfied\nsbatch: error: Batch job submission failed: Requested node configuration is not "
        "available'.\n    sbatch call:\n        sbatch --parsable -p va --mem 900000 --cpus-per-task=2 "
        "-t 150 --comment 'rule_intro@video_encode' --wrap=\"...\"\n"
    )
    error = cluster_failure(message, "group intro@video", AGAIN)
    assert error is not None and error.code == ExitCode.CLUSTER_CANNOT_RUN
    assert error.message == (
        "Slurm refused the job of group intro@video: it asks for 2 CPUs, 900000 MB memory, time 150 min; "
        "partition va (up) has nodes of at most 2 CPUs and 3000 MB, no GPUs, time limit UNLIMITED; "
        "sbatch: error: Memory specification can not be satisfied; sbatch: error: Batch job submission "
        "failed: Requested node configuration is not available"
    )
    passing = message.replace("Memory specification can not be satisfied", "Socket timed out on send/recv")
    error = cluster_failure(passing, "group intro@video", AGAIN)
    assert error is not None and error.code == ExitCode.INTERRUPTED
    assert error.message.startswith("sbatch could not submit the job of group intro@video (sbatch: error: ")
    assert error.message.endswith(f"; continue with {AGAIN}")


@pytest.mark.parametrize(
    ("state", "code", "line"),
    [
        (
            "CANCELLED",
            ExitCode.INTERRUPTED,
            f"Slurm job 12 (group intro@video) was cancelled outside va (scancel) after 00:00:07 of running; "
            f"continue with {AGAIN}",
        ),
        (
            "TIMEOUT",
            ExitCode.CLUSTER_CANNOT_RUN,
            "Slurm job 12 (group intro@video) reached its time limit of 00:01:00 and was ended (TIMEOUT); "
            "give it a longer runtime (set-resources in the profile)",
        ),
        (
            "OUT_OF_MEMORY",
            ExitCode.CLUSTER_CANNOT_RUN,
            "Slurm job 12 (group intro@video) ran out of its 1000M memory (OUT_OF_MEMORY); "
            "give it more mem_mb (set-resources in the profile)",
        ),
        (
            "NODE_FAIL",
            ExitCode.INTERRUPTED,
            "Slurm job 12 (group intro@video) ended when its node node3 was lost (NODE_FAIL) "
            f"after 00:00:07; continue with {AGAIN}",
        ),
        (
            "FAILED",
            ExitCode.INTERNAL,
            "Slurm job 12 (group intro@video) ended FAILED (exit code 0:15 on node3)",
        ),
    ],
)
def test_a_job_slurm_ended_is_named_with_slurms_reason(
    monkeypatch: pytest.MonkeyPatch, state: str, code: ExitCode, line: str
) -> None:
    scontrol(monkeypatch, state)
    message = ended(state)
    if state == "NODE_FAIL":  # the plugin words a node failure its own way
        message = f"SLURM-job '12' failed due to a node failure, SLURM status is: '{state}'. Failed nodes ..."
    error = cluster_failure(message, "group intro@video", AGAIN)
    assert error is not None
    assert (error.code, error.message) == (code, line)


def test_a_message_that_is_not_the_clusters_is_none() -> None:
    assert cluster_failure(None, "rule encode", AGAIN) is None
    assert cluster_failure("Command 'ffmpeg' returned non-zero exit status 1.", "rule encode", AGAIN) is None


def test_the_plugin_still_words_its_reports_as_va_reads_them() -> None:
    """The plugin's refused submission and ended job, as its source spells them: va's patterns must match."""
    # Imported here: every pytest worker collects this module, and the plugin's import costs about 1 s of CPU.
    import snakemake_executor_plugin_slurm  # noqa: PLC0415

    source = inspect.getsource(snakemake_executor_plugin_slurm)
    assert '"SLURM sbatch failed. "' in source and "The error message was '{e.output.strip()}'." in source
    assert "sbatch call:" in source
    assert "f\"SLURM-job '{j.external_jobid}' failed, \"" in source
    assert "SLURM status is: " in source
