"""va/lipsync/providers.py: providers.json loaded and validated, the template placeholders, the shipped
examples, an unknown provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CliRunner, Media
from tests.lipsync.conftest import UseProviders
from tests.lipsync.fakes import command, providers_file
from va.config import REPO_CONFIG
from va.errors import ExitCode, VaError
from va.job import load_job
from va.lipsync.providers import ProviderResources, fill, fill_tree, get_provider, load_providers
from va.plan import plan_job


def test_providers_load_with_their_defaults_filled_in(tmp_path: Path, use_providers: UseProviders) -> None:
    providers = use_providers(fake=command("ok"), remote={"type": "http", "submit_url": "http://x/submit"})
    fake, remote = providers["fake"], providers["remote"]
    assert (fake.type, remote.type) == ("command", "http")
    assert fake.source == tmp_path / "providers.json"
    settings = fake.settings
    assert settings["cwd"] == "{workdir}" and settings["env"] == {} and settings["failures"] == []
    assert settings["retries"] == 0 and settings["timeout_seconds"] == 1800
    assert settings["short_frames_held"] == 0
    assert settings["input"] == {"fps": 25, "sample_rate": 16000, "channels": 1}
    assert remote.settings["poll_interval_seconds"] == 2 and remote.settings["headers"] == {}


def test_a_provider_declares_what_it_asks_a_cluster_for(
    files: Media, use_providers: UseProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_tool = {**command("ok"), "resources": {"cpus": 8, "mem_mb": 24000, "gpus": 1, "runtime": 300}}
    providers = use_providers(plain=command("ok"), gpu=gpu_tool)
    assert providers["plain"].resources == ProviderResources(cpus=1, mem_mb=1000, gpus=0, runtime=60)
    assert providers["gpu"].resources == ProviderResources(cpus=8, mem_mb=24000, gpus=1, runtime=300)
    # The request is no setting of the result: it is left out of the plan, so editing it reruns nothing.
    job = load_job(files.job(lipsync={"enable": True, "provider": "gpu"}))
    lipsync = plan_job(job).lipsync
    assert lipsync is not None and "resources" not in lipsync.settings
    monkeypatch.delenv("VIDAX_LIPSYNC_CONFIG")
    shipped = load_providers()
    assert shipped["audiogram"].resources == ProviderResources(cpus=1, mem_mb=500, gpus=0, runtime=30)
    assert all(p.resources.gpus == 1 for p in shipped.values() if p.type == "command")


def test_a_command_provider_without_an_output_is_rejected_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = command("ok")
    del broken["output"]
    env = providers_file(tmp_path, fake=broken)
    monkeypatch.setenv("VIDAX_LIPSYNC_CONFIG", env["VIDAX_LIPSYNC_CONFIG"])
    with pytest.raises(VaError) as raised:
        load_providers()
    assert str(tmp_path / "providers.json") in raised.value.message


def test_fill_replaces_the_known_placeholders_and_leaves_other_braces() -> None:
    values = {"video": "/in/v.mp4", "fps": "25", "home": "/opt/tool"}
    assert fill("{home}/run --face {video} -r {fps}", values) == "/opt/tool/run --face /in/v.mp4 -r 25"
    assert fill('{"json": {video}}', values) == '{"json": /in/v.mp4}'
    assert fill("{unknown} {audio}", values) == "{unknown} {audio}"  # not a placeholder / no value given


def test_fill_tree_fills_every_string_of_a_nested_document() -> None:
    tree = {"task": {"paths": ["{video}", "{audio}"], "fps": 25, "on": True, "name": "{seed}"}}
    filled = fill_tree(tree, {"video": "v.mp4", "audio": "a.wav", "seed": "7"})
    assert filled == {"task": {"paths": ["v.mp4", "a.wav"], "fps": 25, "on": True, "name": "7"}}
    assert tree["task"]["paths"] == ["{video}", "{audio}"]  # the template itself is left alone


def test_the_shipped_examples_declare_the_output_their_command_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fixed ``output`` must be the ``{output}`` its argv passes; a glob must name no path in the argv."""
    monkeypatch.setenv("VIDAX_LIPSYNC_CONFIG", str(REPO_CONFIG / "lipsync.providers.json"))
    work = tmp_path / "lipsync" / "work"
    commands = {pid: p for pid, p in load_providers().items() if p.type == "command"}
    assert {"wav2lip", "latentsync", "musetalk", "sadtalker"} <= set(commands)
    problems = []
    for pid, provider in commands.items():
        values = {
            "video": str(tmp_path / "lipsync" / "input" / "video.mp4"),
            "image": str(tmp_path / "lipsync" / "input" / "image.png"),
            "audio": str(tmp_path / "lipsync" / "input" / "audio.wav"),
            "output": str(work / "output.mp4"),
            "workdir": str(work),
            "fps": "25",
            "seed": "7",
            "home": provider.settings.get("home", ""),
        }
        argv = [fill(part, values) for part in provider.settings["argv"]]
        told = values["output"] in argv
        if "output" in provider.settings:
            declared = fill(provider.settings["output"], values)
            if declared != values["output"] or not told:
                template = provider.settings["output"]
                problems.append(f"{pid}: output {template!r} is not the {{output}} passed in its argv")
        else:
            pattern = provider.settings["output_glob"]
            if told or any(fill(pattern, values) in part or pattern in part for part in argv):
                problems.append(f"{pid}: output_glob {pattern} names a file its argv tells the tool to write")
    assert not problems, "; ".join(problems)


def test_an_unknown_provider_names_the_config_file_and_the_known_ones(
    tmp_path: Path, use_providers: UseProviders
) -> None:
    use_providers(fake=command("ok"), other=command("ok"))
    with pytest.raises(VaError) as raised:
        get_provider("nope")
    assert raised.value.code == ExitCode.VALIDATION_FAILED
    message = raised.value.message
    assert "'nope' is not configured" in message and "known: fake, other" in message
    assert str(tmp_path / "providers.json") in message


def test_an_unknown_provider_is_a_validation_error(files: Media, va_cli: CliRunner) -> None:
    job = files.job(lipsync={"enable": True, "provider": "nope"})
    result = va_cli("validate", job, env=providers_file(files.root, fake=command("ok")))
    assert result.code == ExitCode.VALIDATION_FAILED
    assert "'nope' is not configured" in result.err and "known: fake" in result.err
    assert len(result.err.strip().splitlines()) == 1
