"""va/slurm.py without a cluster: which video a Slurm job's comment names (the plugin's
``rule_<rule>_wildcards_<values joined by _>``, or a group's ``rule_<group>_<rules>``), so a job the
cluster can never run is reported in the right video's manifest."""

from __future__ import annotations

from va.slurm import ClusterJob, failed_rule, group_id, memory_mb, named_job


def job(comment: str) -> ClusterJob:
    return ClusterJob("7", "PENDING", "PartitionConfig", comment, "va", 64, "700M", "20:00")


def test_a_rule_job_names_the_longest_batch_job_its_wildcards_start_with() -> None:
    names = {"my", "my_job", "other"}
    assert named_job(job("rule_lipsync_wildcards_my_job"), names) == "my_job"
    assert named_job(job("rule_encode_wildcards_my_job_final.mp4"), names) == "my_job"
    assert named_job(job("rule_encode_wildcards_my_final.mp4"), names) == "my"
    assert named_job(job("rule_lipsync_wildcards_gone"), names) is None
    assert named_job(job("rule_lipsync"), {""}) == ""  # one job: its workdir is the graph's
    assert (failed_rule(job("rule_lipsync_wildcards_my")), job("rule_lipsync_wildcards_my").what) == (
        "lipsync",
        "rule lipsync [my]",
    )


def test_a_group_job_names_its_video_and_its_first_rule() -> None:
    comment = f"rule_{group_id('my_job')}_encode_hold_start_frame_lipsync_prepare_audio"
    assert comment == "rule_my_job@video_encode_hold_start_frame_lipsync_prepare_audio"
    grouped = job(comment)
    assert (grouped.group, grouped.rule, grouped.what) == ("my_job@video", None, "group my_job@video")
    assert named_job(grouped, {"my", "my_job"}) == "my_job"
    assert failed_rule(grouped) == "prepare_audio"
    single = job(f"rule_{group_id('')}_encode_hold_start_frame_prepare_audio")
    assert (single.group, named_job(single, {""})) == ("video", "")
    named_video = job(f"rule_{group_id('video_2')}_encode_hold_start_frame_prepare_audio")
    assert (named_video.group, named_job(named_video, {"video_2", ""})) == ("video_2@video", "video_2")


def test_squeue_memory_is_read_in_mb() -> None:
    assert [memory_mb(m) for m in ("700M", "16G", "1T", "2048K", "??")] == [700, 16384, 1048576, 2, 0]
