"""The lip-sync rule's body: prepare the inputs a provider expects, run it, check its output, publish it.

Writes ``lipsync/output.mp4`` and ``lipsync/result.json`` (provider, passthrough, error), which the
manifest reads.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from va import media
from va.atomic import read_json, write_json_atomic
from va.errors import ExitCode, VaError
from va.job import Job, active_provider
from va.lipsync.command import ProviderOutput, ProviderRun, run_command_provider
from va.lipsync.providers import Provider, get_provider
from va.lipsync.remote import run_http_provider
from va.plan import target_frames

log = logging.getLogger(__name__)
RESULT_NAME = "result.json"


def check_output(
    path: Path, audio_seconds: float, fps: int, provider_id: str, tail: str = "", *, short_frames: int = 0
) -> None:
    """The provider's file must decode and last as long as the padded audio, within one frame (or up to
    ``short_frames`` more frames shorter, for tools known to stop early; the encode holds the last frame).

    A failure names the provider's last output lines (``tail``): tools that exit 0 on failure say why there.
    """
    said = f"; its last output: {tail}" if tail else ""
    try:
        seconds = media.decoded_duration(path, stream="v")
    except VaError as exc:
        raise VaError(
            ExitCode.LIPSYNC_FAILED, f"lip-sync provider {provider_id}: output does not decode{said}"
        ) from exc
    frame = 1.0 / fps
    if not -(1 + short_frames) * frame - 1e-6 <= seconds - audio_seconds <= frame + 1e-6:
        raise VaError(
            ExitCode.LIPSYNC_FAILED,
            f"lip-sync provider {provider_id}: output lasts {seconds:.3f} s, "
            f"the audio {audio_seconds:.3f} s{said}",
        )


def _publish(produced: Path, output: Path) -> None:
    temporary = output.with_name(f".{output.name}.tmp")
    shutil.copyfile(produced, temporary)
    os.replace(temporary, output)


def _prepare_inputs(
    provider: Provider,
    job: Job,
    figures: dict[str, Any],
    *,
    still: Path,
    audio: Path,
    folder: Path,
    visual: Path | None,
) -> dict[str, Path]:
    """The still as a video at the provider's frame rate, the still itself, the audio as the tool wants it."""
    inputs = folder / "input"
    if inputs.exists():
        shutil.rmtree(inputs)
    inputs.mkdir(parents=True)
    settings = provider.settings["input"]
    fps = int(settings.get("fps") or job.fps)
    video, image, voice = inputs / "video.mp4", inputs / "image.png", inputs / "audio.wav"
    frames = target_frames(figures["audio_duration_seconds"], fps)
    output = job.data["output"]
    if visual is None:
        media.encode_held_still(
            still, None, video, fps=fps, frames=frames, crf=output["crf"], preset="veryfast"
        )
    else:
        media.encode_from_video(
            visual, None, video, fps=fps, frames=frames, crf=output["crf"], preset="veryfast"
        )
    shutil.copyfile(still, image)
    media.resample_audio(audio, voice, sample_rate=settings["sample_rate"], channels=settings["channels"])
    return {"video": video, "image": image, "audio": voice}


def _run_provider(
    provider: Provider, job: Job, figures: dict[str, Any], *, inputs: dict[str, Path], audio: Path, work: Path
) -> tuple[ProviderOutput, int]:
    fps = int(provider.settings["input"].get("fps") or job.fps)
    if provider.type == "audiogram":
        produced = work / "audiogram.mp4"
        media.render_audiogram(
            inputs["video"],
            audio,
            produced,
            fps=fps,
            frames=target_frames(figures["audio_duration_seconds"], fps),
            style=provider.settings["style"],
            colour=provider.settings["colour"],
            crf=job.data["output"]["crf"],
            preset="veryfast",
        )
        return ProviderOutput(produced), fps
    values = {
        "video": str(inputs["video"]),
        "image": str(inputs["image"]),
        "audio": str(inputs["audio"]),
        "output": str(work / "output.mp4"),
        "workdir": str(work),
        "fps": str(fps),
        "seed": str(figures["seeds"]["value"]),
        "home": str(provider.settings.get("home", "")),
    }
    run = ProviderRun(values, work, work.parent / "logs")
    if provider.type == "http":
        return ProviderOutput(run_http_provider(provider, run, inputs)), fps
    return run_command_provider(provider, run), fps


def run_lipsync(
    job: Job, plan: Path, still: Path, audio: Path, output: Path, *, visual: Path | None = None
) -> dict[str, Any]:
    """Run the job's provider on the held still (or the visual stage's ``visual`` video); with
    ``allow_passthrough`` a failure publishes the un-synced video instead."""
    # Tools run in their own folder: every path they see must be absolute.
    plan, still, audio, output = (path.absolute() for path in (plan, still, audio, output))
    figures = read_json(plan)
    provider = get_provider(str(active_provider(job)))
    folder = output.parent
    work = folder / "work"
    if work.exists():  # the provider's own folder from an earlier, interrupted attempt
        shutil.rmtree(work)
    work.mkdir(parents=True)
    inputs = _prepare_inputs(provider, job, figures, still=still, audio=audio, folder=folder, visual=visual)
    result: dict[str, Any] = {"provider": provider.id, "type": provider.type, "passthrough": False}
    try:
        produced, fps = _run_provider(provider, job, figures, inputs=inputs, audio=audio, work=work)
        check_output(
            produced.path,
            figures["audio_duration_seconds"],
            fps,
            provider.id,
            produced.tail,
            short_frames=provider.settings["short_frames_held"],
        )
        _publish(produced.path, output)
    except VaError as exc:
        result["error"] = exc.as_dict()
        if not job.data["lipsync"]["allow_passthrough"]:
            write_json_atomic(folder / RESULT_NAME, result)
            raise
        log.warning("lip-sync failed, passing the un-synced video through: %s", exc.message)
        result["passthrough"] = True
        _publish(inputs["video"], output)
    write_json_atomic(folder / RESULT_NAME, result)
    return result
