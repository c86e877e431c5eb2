"""va/graph.py: which rules a job's graph has, the phase of each, and why a phase is skipped."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tests.conftest import Media
from va.errors import ExitCode, VaError
from va.graph import PHASES, RULE_PHASE, describe, of_wildcards, rule_outputs
from va.job import load_job
from va.plan import check_supported
from va.workdir import Workdir


def test_a_held_still_job_skips_comfyui_and_lipsync_with_reasons(files: Media) -> None:
    graph = describe(load_job(files.job()))
    assert graph["final"] == "final.mp4"
    assert set(graph["rules"]) == set(PHASES)
    assert graph["rules"]["prepare"] == ["prepare_audio", "hold_start_frame"]
    assert graph["rules"]["encode"] == ["encode"]
    assert "workflow_ids is empty" in graph["skipped"]["comfyui"]
    assert graph["skipped"]["lipsync"] == "lipsync.enable is false"
    assert set(RULE_PHASE.values()) == set(PHASES)


def test_a_lipsync_job_has_its_phase(files: Media) -> None:
    job = load_job(files.job(lipsync={"enable": True, "provider": "audiogram"}, output={"basename": "a.mp4"}))
    graph = describe(job)
    assert "lipsync" not in graph["skipped"] and graph["final"] == "a.mp4"
    check_supported(job)  # the built-in provider needs no config


def test_an_unknown_provider_is_refused_before_anything_runs(files: Media) -> None:
    job = load_job(files.job(lipsync={"enable": True, "provider": "nope"}))
    with pytest.raises(VaError) as caught:
        check_supported(job)
    assert caught.value.code == ExitCode.VALIDATION_FAILED and "nope" in caught.value.message


def test_rule_outputs_are_the_paths_the_rule_files_declare(tmp_path: Path) -> None:
    run = Workdir(tmp_path)
    assert rule_outputs(run, "final.mp4", "prepare_audio") == ["prepare/padded.wav", "prepare/padded.m4a"]
    assert rule_outputs(run, "final.mp4", "hold_start_frame") == ["frames/still.png", "frames/still.mp4"]
    assert rule_outputs(run, "x.mp4", "encode") == ["x.mp4"]
    assert rule_outputs(run, "x.mp4", "comfyui_batch", "0003") == ["comfyui/batches/0003.json"]
    rules = Path(__file__).parent.parent / "rules"
    declared = "".join(path.read_text() for path in rules.glob("*.smk"))
    for rule in RULE_PHASE:
        assert f"rule {rule}:" in declared or f"checkpoint {rule}:" in declared, rule


def test_snakemake_reads_the_signature_of_wildcards_stored_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """va.graph.of_wildcards stores a rule function's signature where Snakemake looks first: with
    inspect.signature broken, Snakemake still knows the function's parameters."""
    from snakemake.common import get_function_params  # noqa: PLC0415 - the test of Snakemake's side

    @of_wildcards
    def settings(wildcards: object) -> str:
        return "x"

    def broken(func: object) -> None:
        raise AssertionError("Snakemake inspected the function again")

    monkeypatch.setattr(inspect, "signature", broken)
    assert list(get_function_params(settings)) == ["wildcards"]
    assert settings("w") == "x"
