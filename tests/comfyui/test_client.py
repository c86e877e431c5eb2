"""va/comfyui/client.py, health.py and workflow.py in this process, against the shared ComfyUI double:
what each call sends, what it returns, and the errors a server's answers become."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from tests.conftest import Comfy, Media, free_port
from va.comfyui.client import ComfyClient, ComfyTransient, describe_rejection
from va.comfyui.health import check_health
from va.comfyui.workflow import check_bindings, load_workflow, render
from va.errors import ExitCode, VaError


def image_graph(prefix: str = "img", count: int = 2, colour: int = 0x102030) -> dict[str, Any]:
    """A weight-free graph the double really runs: ``count`` 8x6 images saved as PNG."""
    empty = {"width": 8, "height": 6, "batch_size": count, "color": colour}
    return {
        "1": {"class_type": "EmptyImage", "inputs": empty},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def finished(client: ComfyClient, prompt_id: str, seconds: float = 20) -> dict[str, Any]:
    """The history entry of ``prompt_id`` once it is there (a deadline, not a fixed wait)."""
    deadline = time.monotonic() + seconds
    while (entry := client.history(prompt_id)) is None:
        assert time.monotonic() < deadline, f"prompt {prompt_id} did not finish within {seconds} s"
        time.sleep(0.02)
    return entry


def other_clients_prompt(comfy: Comfy) -> str:
    """A prompt of another client of the same server (not ours to stop)."""
    answer = requests.post(
        f"{comfy.url}/prompt", json={"prompt": image_graph("other"), "client_id": "someone-else"}, timeout=5
    )
    answer.raise_for_status()
    return str(answer.json()["prompt_id"])


def running(comfy: Comfy, prompt_id: str, seconds: float = 10) -> None:
    """Wait until ``prompt_id`` is the one the double runs."""
    client = ComfyClient(comfy.url)
    deadline = time.monotonic() + seconds
    while prompt_id not in client.queue_ids()[0]:
        assert time.monotonic() < deadline, f"prompt {prompt_id} never started"
        time.sleep(0.02)


# --- health --------------------------------------------------------------------------------------------


def test_health_reads_the_version_from_system_stats(comfy: Comfy) -> None:
    health = check_health(comfy.url + "/")
    assert health.ok and health.endpoint == "/system_stats" and health.version == "0.26.0"
    assert health.url == comfy.url and health.message == "ok"
    assert comfy.stats()["health"] == 0  # /health is only the fallback


def test_health_falls_back_to_the_health_endpoint(comfy: Comfy) -> None:
    comfy.faults(system_stats_404=1000)
    health = check_health(comfy.url)
    assert health.ok and health.endpoint == "/health" and health.version is None
    assert comfy.stats()["health"] == 1


def test_health_of_an_unreachable_server_says_why(comfy: Comfy) -> None:
    health = check_health(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert not health.ok and health.endpoint is None and health.version is None
    assert health.message == "/system_stats: ConnectionError"  # no fallback tried: nobody is there


def test_health_of_a_server_that_closes_connections(comfy: Comfy) -> None:
    comfy.faults(refuse_after_prompts=0)  # every request answered by a closed connection
    health = check_health(comfy.url, timeout=1)
    assert not health.ok and "ConnectionError" in health.message


# --- websocket -----------------------------------------------------------------------------------------


def test_websocket_greets_with_our_client_id(comfy: Comfy) -> None:
    client = ComfyClient(comfy.url)
    try:
        assert client.connect() and client.connected
        message = client.receive(5)
        assert message is not None and message.type == "status"
        assert message.data["sid"] == client.client_id
        assert client.receive(0.05) is None  # nothing more: a timeout, not an error
    finally:
        client.close()
    assert not client.connected and comfy.stats()["ws_connections"] == 1


def test_websocket_refused_leaves_the_client_polling(comfy: Comfy) -> None:
    comfy.faults(ws_refuse=1)
    client = ComfyClient(comfy.url)
    assert client.connect() is False and not client.connected
    assert client.receive(0.05) is None
    stats = comfy.stats()
    assert stats["ws_refused"] == 1 and stats["ws_connections"] == 0
    # without a websocket the prompt still runs and its result is in /history
    prompt_id = client.submit(image_graph())
    assert finished(client, prompt_id)["status"]["status_str"] == "success"


def test_websocket_dropped_by_the_server_is_transient(comfy: Comfy) -> None:
    comfy.faults(drop_ws=1)
    client = ComfyClient(comfy.url)
    assert client.connect()
    client.submit(image_graph())
    with pytest.raises(ComfyTransient, match=r"^websocket (closed by the server|dropped)"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client.receive(0.5)
    assert not client.connected


def test_websocket_carries_the_prompts_events(comfy: Comfy, files: Media, workflows: Path) -> None:
    workflow = load_workflow("vidax_text2img_frames")
    graph = render(workflow, {"width": 16, "height": 16, "frames": 2, "steps": 3, "seed": 5})
    client = ComfyClient(comfy.url)
    try:
        assert client.connect()
        prompt_id = client.submit(graph)
        kinds, progress = [], []
        deadline = time.monotonic() + 20
        while "execution_success" not in kinds:
            assert time.monotonic() < deadline
            message = client.receive(1)
            if message is not None and message.data.get("prompt_id") == prompt_id:
                kinds.append(message.type)
                if message.type == "progress":
                    progress.append((message.data["value"], message.data["max"], message.data["node"]))
    finally:
        client.close()
    assert kinds[0] == "execution_start"
    assert progress == [(1, 3, "3"), (2, 3, "3"), (3, 3, "3")]  # KSampler is node 3 of the template


# --- prompts, history, outputs -------------------------------------------------------------------------


def test_prompt_runs_and_its_outputs_download(comfy: Comfy, tmp_path: Path) -> None:
    client = ComfyClient(comfy.url)
    prompt_id = client.submit(image_graph("mine", count=2, colour=0xFF0000))
    assert comfy.stats()["prompts"] == [prompt_id]
    entry = finished(client, prompt_id)
    images = entry["outputs"]["2"]["images"]
    assert [item["type"] for item in images] == ["output", "output"]
    assert all(item["filename"].startswith("mine_") for item in images)
    target = tmp_path / "out" / "first.png"
    client.download(images[0], target)
    with Image.open(target) as image:
        assert image.size == (8, 6) and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert [p.name for p in target.parent.iterdir()] == ["first.png"]  # no partial file left
    assert client.history("no-such-prompt") is None


def test_download_of_a_missing_output_fails(comfy: Comfy, tmp_path: Path) -> None:
    client = ComfyClient(comfy.url)
    with pytest.raises(VaError) as failed:
        client.download({"filename": "gone.png", "subfolder": "", "type": "output"}, tmp_path / "x.png")
    assert failed.value.code == ExitCode.COMFYUI_FAILED
    assert failed.value.message == "ComfyUI has no output file gone.png (HTTP 404)"
    assert not (tmp_path / "x.png").exists()


def test_upload_is_named_by_its_content_and_sent_once(comfy: Comfy, files: Media, tmp_path: Path) -> None:
    client = ComfyClient(comfy.url)
    start = files.root / "start.png"
    name = client.upload_image(start)
    assert name == f"va-{hashlib.sha256(start.read_bytes()).hexdigest()[:16]}.png"
    assert client.upload_image(start) == name  # the server has it: not sent again
    assert comfy.stats()["uploads"] == 1
    copy = tmp_path / "back.png"
    client.download({"filename": name, "subfolder": "", "type": "input"}, copy)
    assert copy.read_bytes() == start.read_bytes()


def test_two_runs_sharing_a_server_never_replace_each_others_start_image(
    comfy: Comfy, files: Media, tmp_path: Path
) -> None:
    """Both runs name their start frame still.png; ComfyUI keeps uploads by name in one shared folder."""
    first, second = tmp_path / "a" / "still.png", tmp_path / "b" / "still.png"
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_bytes((files.root / "start.png").read_bytes())
    files.image("other.png", "64x48")
    second.write_bytes((files.root / "other.png").read_bytes())
    names = [ComfyClient(comfy.url).upload_image(path) for path in (first, second)]
    assert names[0] != names[1]
    for name, path in zip(names, (first, second), strict=True):
        back = tmp_path / f"back-{name}"
        ComfyClient(comfy.url).download({"filename": name, "subfolder": "", "type": "input"}, back)
        assert back.read_bytes() == path.read_bytes()


def test_the_double_keeps_uploads_by_name_as_comfyui_does(comfy: Comfy, files: Media) -> None:
    """What the real server does with a name it already holds: overwrite=true replaces the file;
    without it, identical content is reused and different content becomes "name (1).png"."""

    def upload(data: bytes, overwrite: str) -> str:
        answer = requests.post(
            f"{comfy.url}/upload/image",
            files={"image": ("still.png", data, "image/png")},
            data={"overwrite": overwrite},
            timeout=5,
        )
        return str(answer.json()["name"])

    assert upload(b"one", "true") == "still.png"
    assert upload(b"two", "true") == "still.png"  # replaced: another run's picture is gone
    assert upload(b"two", "false") == "still.png"
    assert upload(b"three", "false") == "still (1).png"
    view = requests.get(f"{comfy.url}/view", params={"filename": "still.png", "type": "input"}, timeout=5)
    assert view.content == b"two"


def test_server_error_on_prompt_is_transient(comfy: Comfy) -> None:
    comfy.faults(prompt_500=1)
    client = ComfyClient(comfy.url)
    with pytest.raises(ComfyTransient, match=r"^POST /prompt: HTTP 500$"):
        client.submit(image_graph())
    assert client.submit(image_graph())  # the next one goes through
    stats = comfy.stats()
    assert stats["prompt_posts"] == 2 and len(stats["prompts"]) == 1


def test_refused_connection_is_transient(comfy: Comfy) -> None:
    comfy.faults(refuse_after_prompts=0)
    client = ComfyClient(comfy.url)
    with pytest.raises(ComfyTransient, match=r"^GET /system_stats: ConnectionError$"):
        client.system_stats()
    with pytest.raises(ComfyTransient, match=r"^POST /prompt: ConnectionError$"):
        client.submit(image_graph())
    assert comfy.stats()["refused"] == 2


def test_unknown_port_is_transient() -> None:
    with pytest.raises(ComfyTransient, match="ConnectionError"):
        ComfyClient(f"http://127.0.0.1:{free_port()}").history("x")


def test_the_environments_proxy_is_followed_unless_no_proxy_exempts_the_server(
    comfy: Comfy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As requests does, though a client reads the environment once and not at every request: a proxy
    named there carries the requests (here one nobody listens on), unless ``no_proxy`` names the server."""
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ComfyTransient, match=r"^GET /system_stats: ProxyError$"):
        ComfyClient(comfy.url).system_stats()
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    assert ComfyClient(comfy.url).system_stats()["system"]["comfyui_version"]


def test_rejected_prompt_names_the_node_and_input(comfy: Comfy) -> None:
    graph = render(load_workflow("vidax_text2img_frames"), {"ckpt_name": "missing.safetensors"})
    with pytest.raises(VaError) as rejected:
        ComfyClient(comfy.url).submit(graph)
    assert rejected.value.code == ExitCode.COMFYUI_REJECTED
    assert rejected.value.message == (
        "ComfyUI rejected the prompt: Prompt outputs failed validation; node 4 (CheckpointLoaderSimple) "
        "input ckpt_name: Value not in list (ckpt_name: 'missing.safetensors' not in "
        "['sd_xl_base_1.0.safetensors'])"
    )
    assert comfy.stats()["prompts"] == []


def test_rejected_prompt_of_an_unknown_node(comfy: Comfy) -> None:
    graph = {**image_graph(), "3": {"class_type": "NoSuchNode", "inputs": {}}}
    with pytest.raises(VaError) as rejected:
        ComfyClient(comfy.url).submit(graph)
    assert rejected.value.code == ExitCode.COMFYUI_REJECTED
    assert "Node 'NoSuchNode' not found" in rejected.value.message
    assert "node 3 (NoSuchNode)" in rejected.value.message


def test_describe_rejection_of_odd_bodies() -> None:
    assert describe_rejection(None) == "ComfyUI rejected the prompt"
    assert describe_rejection({"error": "text"}) == "rejected"
    body = {"error": {"type": "prompt_no_outputs"}, "node_errors": {}}
    assert describe_rejection(body) == "prompt_no_outputs"


# --- queue, interrupt, cancel --------------------------------------------------------------------------


def test_cancel_of_our_running_prompt_interrupts_it(comfy: Comfy) -> None:
    comfy.faults(hang=1)
    client = ComfyClient(comfy.url)
    ours = client.submit(image_graph())
    running(comfy, ours)
    client.cancel(ours)
    entry = finished(client, ours)
    assert entry["status"]["status_str"] == "error"
    assert [name for name, _ in entry["status"]["messages"]][-1] == "execution_interrupted"
    stats = comfy.stats()
    assert stats["interrupts"] == [ours] and stats["interrupted"] == [ours] and stats["deleted"] == []


def test_cancel_of_our_queued_prompt_deletes_only_it(comfy: Comfy) -> None:
    comfy.faults(hang=1)
    other = other_clients_prompt(comfy)
    running(comfy, other)
    client = ComfyClient(comfy.url)
    ours = client.submit(image_graph())
    assert client.queue_ids() == ({other}, {ours}) and client.queued(ours)
    client.cancel(ours)
    stats = comfy.stats()
    assert stats["deleted"] == [ours]
    assert stats["interrupts"] == [] and stats["interrupted"] == []  # the other client's prompt runs on
    assert client.queue_ids() == ({other}, set()) and not client.queued(ours)


def test_cancel_of_a_lost_prompt_sends_a_scoped_interrupt(comfy: Comfy) -> None:
    comfy.faults(lose=1)
    client = ComfyClient(comfy.url)
    ours = client.submit(image_graph())
    assert not client.queued(ours)
    client.cancel(ours)
    stats = comfy.stats()
    assert stats["interrupts"] == [ours]  # scoped to our id: a server that honours it stops nothing else
    assert stats["interrupted"] == [] and stats["deleted"] == []


# --- /api/jobs, as ComfyUI's server.py and comfy_execution/jobs.py answer it ---------------------------


def test_the_jobs_api_answers_as_comfyui_does(comfy: Comfy) -> None:
    """The probe, a finished job (status, outputs, execution_status), an unknown id (404), the list's
    pagination and its refusal of a limit that is not positive (400)."""
    comfy.faults(jobs_api=1)
    client = ComfyClient(comfy.url)
    assert client.jobs_api()
    ours = client.submit(image_graph())
    entry = finished(client, ours)
    assert entry["status"]["status_str"] == "success" and len(entry["outputs"]["2"]["images"]) == 2
    job = client.job(ours)
    assert job is not None and job["status"] == "completed" and job["outputs_count"] == 2
    assert "execution_error" not in job
    assert client.job("3b0c6a4e-0000-4000-8000-000000000000") is None
    listed = requests.get(f"{comfy.url}/api/jobs", params={"limit": 1}, timeout=5).json()
    assert [j["id"] for j in listed["jobs"]] == [ours] and "outputs" not in listed["jobs"][0]
    assert listed["pagination"] == {"offset": 0, "limit": 1, "total": 1, "has_more": False}
    assert requests.get(f"{comfy.url}/api/jobs", params={"limit": 0}, timeout=5).status_code == 400


def test_a_failed_job_names_its_node_in_execution_error(comfy: Comfy) -> None:
    comfy.faults(jobs_api=1, execution_error=1)
    client = ComfyClient(comfy.url)
    ours = client.submit(image_graph())
    assert finished(client, ours)["status"]["status_str"] == "error"
    job = client.job(ours)
    assert job is not None and job["status"] == "failed"
    assert job["execution_error"]["node_id"] and job["execution_error"]["exception_message"]


def test_a_prompt_interrupted_by_someone_else_ends_as_cancelled_on_a_jobs_api_server(comfy: Comfy) -> None:
    """Newer ComfyUI reports an interrupted job as ``cancelled`` (not ``failed``): the wait must see it
    as ended, with the history entry's error status, instead of waiting for it to finish."""
    comfy.faults(jobs_api=1, hang=1)
    client = ComfyClient(comfy.url)
    ours = client.submit(image_graph())
    running(comfy, ours)
    requests.post(f"{comfy.url}/interrupt", timeout=5).raise_for_status()  # a user's global interrupt
    entry = finished(client, ours, seconds=10)
    assert entry["status"]["status_str"] == "error"
    assert [name for name, _ in entry["status"]["messages"]][-1] == "execution_interrupted"
    job = client.job(ours)
    assert job is not None and job["status"] == "cancelled"


def test_cancel_through_the_jobs_api_of_an_ended_prompt_is_a_no_op(comfy: Comfy) -> None:
    """ComfyUI answers a cancel of a finished or unknown job 200 ``{"cancelled": false}``: nothing else
    is sent (no interrupt that could hit another client's prompt)."""
    comfy.faults(jobs_api=1)
    client = ComfyClient(comfy.url)
    ours = client.submit(image_graph())
    finished(client, ours)
    answer = requests.post(f"{comfy.url}/api/jobs/{ours}/cancel", timeout=5)
    assert answer.status_code == 200 and answer.json() == {"cancelled": False}
    client.cancel(ours)
    stats = comfy.stats()
    assert stats["job_cancels"] == [ours, ours] and stats["interrupts"] == [] and stats["deleted"] == []


def test_cancel_on_a_jobs_api_server_without_the_cancel_route_uses_queue_and_interrupt(comfy: Comfy) -> None:
    """ComfyUI had /api/jobs before POST /api/jobs/{id}/cancel: there the route answers 404 and our
    prompt is stopped the older way, the pending one deleted from /queue, the running one interrupted."""
    comfy.faults(jobs_api=1, jobs_without_cancel=1, hang=2)
    other = other_clients_prompt(comfy)
    running(comfy, other)
    client = ComfyClient(comfy.url)
    assert client.jobs_api()
    queued = client.submit(image_graph("queued"))
    client.cancel(queued)
    stats = comfy.stats()
    assert stats["deleted"] == [queued] and stats["interrupted"] == [] and stats["job_cancels"] == []
    requests.post(f"{comfy.url}/interrupt", json={"prompt_id": other}, timeout=5).raise_for_status()
    ours = client.submit(image_graph("ours"))
    running(comfy, ours)
    client.cancel(ours)
    stats = comfy.stats()
    assert stats["interrupts"][-1] == ours and stats["interrupted"] == [other, ours]
    assert finished(client, ours)["status"]["status_str"] == "error"


def test_cancel_on_a_server_that_went_away_does_not_raise(comfy: Comfy) -> None:
    comfy.faults(refuse_after_prompts=0)
    ComfyClient(comfy.url).cancel("whatever")  # only logged: cancelling is best effort
    assert comfy.stats()["refused"] == 1


# --- workflows -----------------------------------------------------------------------------------------


def test_render_sets_every_bound_input(workflows: Path) -> None:
    workflow = load_workflow("video_clip")
    assert workflow.source == str(workflows / "video_clip.json") and not workflow.binds_start_image
    graph = render(workflow, {"frames": 5, "seed": 9, "fps": None, "filename_prefix": "p"})
    assert graph["1"]["inputs"]["batch_size"] == 5 and graph["1"]["inputs"]["color"] == 9
    assert graph["2"]["inputs"]["fps"] == 8  # no value: the template's
    assert graph["3"]["inputs"]["filename_prefix"] == "p"
    assert workflow.graph["1"]["inputs"]["batch_size"] == 1  # the template itself is untouched
    assert load_workflow("held_start_batch").binds_start_image


def test_default_workflow_is_built_in(state_dir: Path) -> None:
    workflow = load_workflow("vidax_text2img_frames")
    assert workflow.id == "vidax_text2img_frames" and "seed" in workflow.bindings


def test_unknown_workflow_names_where_it_was_looked_for(workflows: Path) -> None:
    with pytest.raises(VaError) as missing:
        load_workflow("nope")
    assert missing.value.code == ExitCode.VALIDATION_FAILED
    assert "workflow 'nope' not found in" in missing.value.message and str(workflows) in missing.value.message


def test_binding_to_a_missing_input_names_node_and_class() -> None:
    graph = image_graph()
    with pytest.raises(VaError) as bad:
        check_bindings("w", graph, {"seed": [{"node": "1", "input": "seed"}]})
    assert bad.value.code == ExitCode.VALIDATION_FAILED
    assert bad.value.message == "workflow w: binding 'seed': node 1 (EmptyImage) has no input 'seed'"
    with pytest.raises(VaError, match="not an API-format object"):
        check_bindings("w", [], {})


def test_workflow_without_bindings_file_is_refused(workflows: Path) -> None:
    (workflows / "lonely.json").write_text(json.dumps(image_graph()))
    with pytest.raises(VaError) as bad:
        load_workflow("lonely")
    assert bad.value.code == ExitCode.VALIDATION_FAILED
    assert "no bindings file lonely.bindings.json" in bad.value.message
