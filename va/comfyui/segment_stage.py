"""One segment of a generation by segments: its inputs made and uploaded, one prompt, its clip checked.

A segment's inputs are its voice (the padded audio under exactly the frames its clip holds, the head
frames' included, at the model's sample rate, mono), and for a chained template the previous segment's
last ``context_frames`` frames as a short video (``previous_frames``) and its last frame as an image
(``last_frame``); the first segment gets the start frame held that long. Each is uploaded under a name
derived from its content. The clip that comes back must hold exactly the planned frames, of the planned
size, and, when it carries audio, that long a voice; ``va.comfyui.assemble`` joins the clips.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from va import media
from va.atomic import place_file, publish, read_json, scratch_folder, write_json_atomic
from va.comfyui.client import ComfyClient, input_name
from va.comfyui.pool import Lease, PoolSettings
from va.comfyui.protocol import Attempt, HistoryEntry, ParameterValue, SegmentRecord
from va.comfyui.stage import (
    ComfyServer,
    PromptUnit,
    PromptWatch,
    Reporter,
    StageServers,
    filename_prefix,
    graph_name,
    output_files,
    run_token,
    submit_graph,
    wait_of,
    with_retries,
)
from va.comfyui.starter import own_server
from va.comfyui.workflow import Workflow, graph_json, load_workflow, render
from va.errors import ExitCode, VaError
from va.plan_parts import batch_seed
from va.rule_settings import SegmentSettings
from va.segments import SegmentContract, VoiceSegment
from va.workdir import Workdir

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SegmentFiles:
    """Where one segment's files are: what it reads (the held still, the padded audio, the previous
    segment's clip when the template is chained and it is not the first) and what it writes."""

    still: Path
    audio: Path
    previous: Path | None
    clip: Path
    record: Path

    @property
    def inputs(self) -> Path:
        """The folder of the files made for its prompt (voice, context, last frame)."""
        return self.clip.parent / "inputs" / self.clip.stem

    def take(self, fingerprint: str) -> tuple[Path, Path]:
        """Where the clip and record of the take of ``fingerprint`` are kept (not Snakemake's outputs, which
        a rerun deletes): a step killed after its prompt ended, or a retake back to an earlier seed, finds
        the clip there instead of asking ComfyUI again."""
        stem = self.clip.parent / "takes" / f"{self.clip.stem}-{fingerprint}"
        return stem.with_suffix(".mp4"), stem.with_suffix(".json")


def segment_inputs(
    segment: VoiceSegment, contract: SegmentContract, workflow: Workflow, files: SegmentFiles
) -> dict[str, Path]:
    """The files a segment's prompt binds, made in ``files.inputs``: ``audio`` always, ``previous_frames``
    and ``last_frame`` when the template binds them (from the previous clip, or the start frame held)."""
    folder = files.inputs
    folder.mkdir(parents=True, exist_ok=True)
    made = {"audio": folder / "voice.wav"}
    previous = files.previous
    if "previous_frames" in workflow.bindings:
        made["previous_frames"] = folder / "context.mp4"
    if "last_frame" in workflow.bindings:  # the first segment's is the start frame itself
        made["last_frame"] = folder / "last.png" if previous is not None else files.still
    # One ffmpeg for the voice and the context (from the previous clip, or the start frame held) and the
    # previous clip's last frame: each ffmpeg start counts in a segment's own time.
    media.cut_voice_and_context(
        files.audio,
        made["audio"],
        start_seconds=segment.audio_start_seconds,
        seconds=segment.audio_seconds,
        sample_rate=contract.sample_rate,
        clip=previous,
        still=files.still,
        context=made.get("previous_frames"),
        last=made.get("last_frame") if previous is not None else None,
        frames=contract.context_frames,
        fps=contract.fps,
    )
    return made


def check_segment_clip(
    clip: Path, segment: VoiceSegment, contract: SegmentContract, size: tuple[int, int]
) -> media.ClipFigures:
    """A segment's clip must hold exactly its planned frames, of the planned ``size``, and, when it carries
    audio, that long a voice (within a frame); anything else fails the segment naming what came."""
    figures = media.clip_figures(clip)
    fps = contract.fps
    planned = segment.frames / fps
    audio_fits = figures.audio_seconds is None or abs(figures.audio_seconds - planned) <= 1 / fps + 1e-6
    if figures.frames != segment.frames or (figures.width, figures.height) != size or not audio_fits:
        sound = "" if figures.audio_seconds is None else f" and {figures.audio_seconds:.3f} s of audio"
        raise VaError(
            ExitCode.COMFYUI_FAILED,
            f"segment {segment.name}: clip {clip.name} has {figures.frames} frames of "
            f"{figures.width}x{figures.height}{sound} where {segment.frames} frames of {size[0]}x{size[1]} "
            f"at {fps} fps ({planned:.3f} s) were planned",
        )
    return figures


class SegmentRun(PromptUnit[SegmentRecord]):
    """The attempts of one segment: each uploads its inputs, renders, submits, waits for and collects one
    prompt on a slot of the pool."""

    def __init__(
        self,
        settings: SegmentSettings,
        *,
        files: SegmentFiles,
        workdir: Path,
        report: Reporter,
        servers: StageServers,
    ) -> None:
        generation = settings.generation
        assert generation.contract is not None and generation.sampling is not None, "a planned segment"
        self.generation, self.contract, self.segment = generation, generation.contract, settings.segment
        self.files, self.workdir, self.report, self.servers = files, workdir, report, servers
        self.workflow = load_workflow(generation.workflow_ids[0])
        self.graphs = workdir / "comfyui" / "graphs"
        self.graphs.mkdir(parents=True, exist_ok=True)
        self.token = run_token(workdir)
        self.size = (generation.sampling.width, generation.sampling.height)
        self.made = segment_inputs(self.segment, self.contract, self.workflow, files)
        #: Seconds spent waiting for ComfyUI to run the prompt (the rest of the segment's time is va's own).
        self.waited = 0.0

    @property
    def uploads(self) -> dict[str, Path]:
        """The files the prompt binds, by parameter."""
        start = {"start_image": self.files.still} if self.workflow.binds_start_image else {}
        return {**self.made, **start}

    def values(self, seed: int, prefix: str, names: dict[str, str]) -> dict[str, ParameterValue]:
        """What the template's bindings receive: the job's parameters, the segment's frames, seed, prompt
        and index, and the ``names`` of its uploaded inputs."""
        values = self.generation.values(self.segment, seed)
        return {**values, "segment_index": self.segment.index, "filename_prefix": prefix, **names}

    @property
    def fingerprint(self) -> str:
        """What the segment's clip depends on: the graph of its first attempt, without the output prefix,
        its inputs named by their content (the voice, the previous clip's frames, the still)."""
        names = {param: input_name(path) for param, path in self.uploads.items()}
        graph = graph_json(render(self.workflow, self.values(self.segment.seed, "va", names)))
        return hashlib.sha256(graph.encode()).hexdigest()[:16]

    @property
    def what(self) -> str:
        return f"segment {self.segment.name}"

    def _where(self, attempt: int, url: str) -> Attempt:
        seed = batch_seed(
            self.segment.seed, 0, attempt, self.generation.per_retry
        )  # per_retry: a seed an attempt
        return {
            "kind": "comfyui_attempt",
            "segment": self.segment.name,
            "attempt": attempt + 1,
            "seed": seed,
            "server": url,
        }

    def _submit_and_collect(
        self, attempt: int, lease: Lease, server: ComfyServer, where: Attempt, *, fresh: bool
    ) -> tuple[SegmentRecord, str]:
        segment, client, name, seed = self.segment, server.client, self.segment.name, where["seed"]
        version = server.ask_version()
        prefix = filename_prefix(self.token, self.workflow, f"s{name}t{segment.take}", attempt, fresh)
        # The voice and context were made for this segment: sent without asking whether the server holds
        # them (the still, shared by every segment, is asked about first).
        names = {
            param: client.upload_image(path.absolute(), ask_first=param == "start_image")
            for param, path in self.uploads.items()
        }
        graph = render(self.workflow, self.values(seed, prefix, names))
        graph_file = self.graphs / graph_name(f"segment-{name}", attempt, fresh)
        self.prompt_id = prompt_id = submit_graph(
            client, graph, graph_file, report=self.report, what=self.what, where=where
        )
        began = time.monotonic()
        entry = PromptWatch(
            client,
            wait_of(self.generation),
            prompt_id,
            self.report,
            self.what,
            failover=self.servers.failover,
        ).wait()
        self.waited += time.monotonic() - began
        lease.release()  # the server is free for the next unit while this one downloads
        figures = self._collect(client, entry)
        record: SegmentRecord = {
            "segment": name,
            "index": segment.index,
            "seed": seed,
            "take": segment.take,
            "attempts": attempt + 1,
            "prompt_id": prompt_id,
            "server": lease.url,
            "comfyui_version": version,
            "workflow": self.workflow.id,
            "graph": str(graph_file.relative_to(self.workdir)),
            "clip": str(self.files.clip),
            "frames": figures.frames,
            "clip_fps": figures.fps,
            "audio_seconds": figures.audio_seconds,
        }
        return record, f"clip of {figures.frames} frames"

    def _collect(self, client: ComfyClient, entry: HistoryEntry) -> media.ClipFigures:
        """Download the prompt's video under a temporary name, check it, then put it in place."""
        videos, _ = output_files(entry)
        if not videos:
            raise VaError(
                ExitCode.COMFYUI_FAILED,
                f"segment {self.segment.name}: the prompt produced no video (a segment template ends in "
                "SaveVideo or VHS_VideoCombine)",
            )
        target = self.files.clip
        with scratch_folder(target) as scratch:
            partial = scratch / f"{target.stem}{Path(videos[0]['filename']).suffix or '.mp4'}"
            client.download(videos[0], partial)
            figures = check_segment_clip(partial, self.segment, self.contract, self.size)
            publish(partial, target)
        return figures


def run_segment(
    settings: SegmentSettings,
    *,
    files: SegmentFiles,
    workdir: Workdir,
    report: Reporter,
    pool: PoolSettings,
    logs: Path,
) -> SegmentRecord:
    """Generate one segment on a free server of the ``pool`` (retrying transient failures as a batch does)
    and write its record; the record tells how long va itself took (``own_seconds``: all but ComfyUI's run
    of the prompt). A take of the same fingerprint made before is taken instead (``SegmentFiles.take``)."""
    began = time.monotonic()
    name = settings.segment.name
    with own_server(pool, workdir, logs) as (used, private):
        servers = StageServers(used, private)
        try:
            run = SegmentRun(settings, files=files, workdir=workdir.root, report=report, servers=servers)
            fingerprint = run.fingerprint
            clip, record = files.take(fingerprint)
            if clip.is_file() and record.is_file():
                report(
                    f"segment {name}: the clip of this take is there ({fingerprint}): not submitted",
                    kind="comfyui_attempt",
                    segment=name,
                    outcome="kept",
                )
                place_file(clip, files.clip)
                kept: SegmentRecord = read_json(record)
                write_json_atomic(files.record, kept)
                return kept
            wait = wait_of(settings.generation)
            document = with_retries(wait, f"segment {name}", run, report, servers, segment=name)
        finally:
            servers.close()
    document["fingerprint"] = fingerprint
    document["own_seconds"] = round(time.monotonic() - began - run.waited, 3)
    place_file(files.clip, clip)
    write_json_atomic(record, document)
    write_json_atomic(files.record, document)
    return document
