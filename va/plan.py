"""The plan of a run, ``prepare/plan.json``: durations, frame count, seed, input hashes, tool versions."""

from __future__ import annotations

import hashlib
import math
import secrets
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import va
from va import media
from va.errors import ExitCode, VaError
from va.job import Job, comfyui_active
from va.timeline import cut_batches, load_segments, segment_overrides

INPUT_NOT_FOUND = "INPUT_NOT_FOUND"
#: Random seeds stay below 2**53 so that every JSON reader keeps them exact.
RANDOM_SEED_LIMIT = 2**53
#: Batch seeds wrap around at 2**64, the range of ComfyUI's seed inputs.
SEED_LIMIT = 2**64
#: Distance between the seeds of two attempts of one batch under ``seed_policy: per_retry``.
RETRY_SEED_STRIDE = 1_000_003


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks; ``INPUT_NOT_FOUND`` when it does not exist."""
    if not path.is_file():
        return INPUT_NOT_FOUND
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def choose_seed(job: Job) -> int:
    """The job's seed under ``fixed`` (and under ``per_retry`` when one is given), else a fresh random one."""
    determinism = job.data["determinism"]
    policy, seed = determinism["seed_policy"], determinism.get("seed")
    if policy == "fixed" or (policy == "per_retry" and seed is not None):
        return int(seed)
    return secrets.randbelow(RANDOM_SEED_LIMIT)


def target_frames(duration_seconds: float, fps: int) -> int:
    """Frames of the output: ``round(duration * fps)``, at least one."""
    return max(1, round(duration_seconds * fps))


def batch_name(index: int) -> str:
    """The wildcard value and file stem of ComfyUI batch ``index`` (0-based)."""
    return f"{index:04d}"


def batch_seed(seed: int, index: int, attempt: int = 0, per_retry: bool = False) -> int:
    """Seed of a batch: the run's seed plus the batch index (plus a stride per retry under ``per_retry``)."""
    return (seed + index + (attempt * RETRY_SEED_STRIDE if per_retry else 0)) % SEED_LIMIT


def plan_generation(job: Job, visual_seconds: float, seed: int) -> dict[str, Any]:
    """How many frames ComfyUI generates, at which rate, in which batches with which seeds."""
    settings = job.data["comfyui"]
    gen_fps = int(settings["params"].get("fps") or job.fps)
    if gen_fps > job.fps:
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"comfyui.params.fps: {gen_fps} is above determinism.fps {job.fps} "
            "(frames can be held, not invented)",
        )
    frames = max(1, math.ceil(visual_seconds * gen_fps - 1e-9))
    size = int(settings["batch_size"])
    segments = load_segments(job)
    if segments:  # no batch spans two segments; each takes its segment's prompt and strength
        pre = float(job.data["buffer"]["pre_seconds"])
        cuts = cut_batches(frames, size, gen_fps, pre, segments)
        batches = [
            {"index": i, "name": batch_name(i), "first": first, "frames": count, "seed": batch_seed(seed, i),
             "segment": owner, **({} if owner is None else segment_overrides(segments[owner]))}
            for i, (first, count, owner) in enumerate(cuts)
        ]  # fmt: skip
        return {"fps": gen_fps, "frames": frames, "batch_size": size, "batches": batches}
    batches = [
        {"index": i, "name": batch_name(i), "first": i * size, "frames": min(size, frames - i * size),
         "seed": batch_seed(seed, i)}
        for i in range(math.ceil(frames / size))
    ]  # fmt: skip
    return {"fps": gen_fps, "frames": frames, "batch_size": size, "batches": batches}


def tool_versions() -> dict[str, str]:
    """Versions of the tools that shape the output."""
    try:
        snakemake_version = metadata.version("snakemake")
    except metadata.PackageNotFoundError:
        snakemake_version = "not installed"
    return {
        "va": va.__version__,
        "python": sys.version.split()[0],
        "snakemake": snakemake_version,
        "ffmpeg": media.tool_version("ffmpeg"),
    }


def build_plan(job: Job, padded: media.AudioInfo) -> dict[str, Any]:
    """The plan for ``job`` once its audio has been padded to ``padded``."""
    buffer = job.data["buffer"]
    pre, post = float(buffer["pre_seconds"]), float(buffer["post_seconds"])
    visual_seconds = padded.duration_seconds
    seed = choose_seed(job)
    effective = {
        "prompt": job.data["motion"]["prompt"],
        "negative_prompt": job.data["motion"]["negative_prompt"],
        "guidance": job.data["motion"]["guidance"],
        "fps": job.fps,
        "seed": seed,
        "output": job.data["output"],
        "comfyui": job.data["comfyui"],
        "lipsync": job.data["lipsync"],
        "visual_source": "comfyui" if comfyui_active(job) else "held_start_frame",
    }
    generation = plan_generation(job, visual_seconds, seed) if comfyui_active(job) else None
    return {
        "comfyui": generation,
        "job": str(job.path),
        "audio_input_duration_seconds": round(visual_seconds - pre - post, 6),
        "audio_duration_seconds": round(padded.duration_seconds, 6),
        "buffer": {"pre_seconds": pre, "post_seconds": post},
        "visual_target_duration_seconds": round(visual_seconds, 6),
        "fps": job.fps,
        "target_frames": target_frames(visual_seconds, job.fps),
        "seeds": {"policy": job.data["determinism"]["seed_policy"], "value": seed},
        "inputs": {
            "audio": {"path": str(job.audio), "sha256": sha256_file(job.audio)},
            "start": {"path": str(job.start), "sha256": sha256_file(job.start)},
        },
        "effective_params": effective,
        "tools": tool_versions(),
    }
