"""The layout of a run's workdir: one place that names every file the graph and the tools use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from va.atomic import read_json


@dataclass(frozen=True)
class Workdir:
    """Paths inside one run's workdir (see docs/OUTPUT_CONTRACT.md)."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def manifest_digest(self) -> Path:
        """What the manifest needs of the event log, kept up to date with it (va.manifest.EventDigest)."""
        return self.root / "logs" / "manifest.digest.json"

    @property
    def events(self) -> Path:
        return self.root / "logs" / "events.jsonl"

    @property
    def text_log(self) -> Path:
        """The run's log for people (docs/TEXT_LOG.md)."""
        return self.root / "logs" / "runner.log"

    @property
    def snakemake_log(self) -> Path:
        return self.root / "logs" / "snakemake.log"

    @property
    def padded_audio(self) -> Path:
        return self.root / "prepare" / "padded.wav"

    @property
    def padded_aac(self) -> Path:
        """The padded audio encoded to AAC once, stream-copied into the final video."""
        return self.root / "prepare" / "padded.m4a"

    @property
    def loudness_record(self) -> Path:
        """The voice's loudness before and after its normalization (``audio.loudness``)."""
        return self.root / "prepare" / "loudness.json"

    @property
    def plan(self) -> Path:
        return self.root / "prepare" / "plan.json"

    @property
    def still(self) -> Path:
        return self.root / "frames" / "still.png"

    @property
    def still_loop(self) -> Path:
        """Two seconds of the held still, encoded once, repeated by stream copy."""
        return self.root / "frames" / "still.mp4"

    @property
    def comfyui_visual(self) -> Path:
        """The ComfyUI stage's picture at the job's frame rate and frame count."""
        return self.root / "comfyui" / "output.mp4"

    @property
    def motion_visual(self) -> Path:
        """The held still with the job's camera move, at the job's frame rate and frame count."""
        return self.root / "motion" / "output.mp4"

    @property
    def stabilized_visual(self) -> Path:
        """ComfyUI's picture stabilized (vidstab, deflicker), at the job's frame rate and frame count."""
        return self.root / "stabilize" / "output.mp4"

    @property
    def captions_srt(self) -> Path:
        """The job's captions beside the final video, in its time (docs/TIMELINE.md)."""
        return self.root / "captions.srt"

    @property
    def captions_vtt(self) -> Path:
        return self.root / "captions.vtt"

    def batch_result(self, batch: str) -> Path:
        """Record of one finished ComfyUI batch."""
        return self.root / "comfyui" / "batches" / f"{batch}.json"

    def segment_clip(self, segment: str) -> Path:
        """The clip ComfyUI made of one segment (head frames included), checked against its plan."""
        return self.root / "comfyui" / "segments" / f"{segment}.mp4"

    def segment_record(self, segment: str) -> Path:
        """Record of one finished segment: its seed, take, prompt id, attempts, clip."""
        return self.root / "comfyui" / "segments" / f"{segment}.json"

    @property
    def retakes(self) -> Path:
        """What ``va retake`` asked of the segments, read when the run is planned."""
        return self.root / "comfyui" / "retakes.json"

    @property
    def lipsync_output(self) -> Path:
        return self.root / "lipsync" / "output.mp4"

    def lipsync_chunk(self, chunk: str) -> Path:
        """The provider's video of one chunk of a cut audio, of exactly the chunk's planned frames."""
        return self.root / "lipsync" / "chunks" / f"{chunk}.mp4"

    @property
    def lipsync_result(self) -> Path:
        return self.root / "lipsync" / "result.json"

    @property
    def produced_job(self) -> Path:
        return self.root / "job.json"

    @property
    def reports(self) -> Path:
        """The reports ``va report`` wrote of this run or batch, by path, each with its file's identity then:
        a file at a report's path that is not one of them (or was changed since) is never overwritten."""
        return self.root / "logs" / "reports.json"

    @property
    def run_lock(self) -> Path:
        """Held by the ``va`` process driving a run, so two never drive one workdir."""
        return self.root / "logs" / ".run.lock"

    @property
    def processes(self) -> Path:
        """The live processes of the run, kept by its guardian (va/processes.py); gone when it ended."""
        return self.root / "logs" / "processes.json"

    @property
    def state_lock(self) -> Path:
        """Serialises appends to the event log and rewrites of the manifest."""
        return self.root / "logs" / ".state.lock"

    def kept_final(self, basename: str) -> Path:
        """Where a final found out of sync is kept instead of published (``final.out-of-sync.mp4``)."""
        name = Path(basename)
        return self.root / f"{name.stem}.out-of-sync{name.suffix}"

    @property
    def kept_record(self) -> Path:
        """The videos this run kept out of sync (``kept_final``), by name, each with the SHA-256 it was made
        with: a file of that name that does not match is a user's, never replaced."""
        return self.root / "logs" / "kept.json"

    def kept_digests(self) -> dict[str, frozenset[str]]:
        """What ``kept_record`` holds: each kept video's name with the SHA-256 digests a file of that name
        may have to be the run's (two while a new one takes the place of the one before, one otherwise);
        none when the record is missing or unreadable."""
        try:
            recorded = read_json(self.kept_record)
        except (OSError, ValueError):
            return {}
        if not isinstance(recorded, dict):
            return {}
        listed = {name: [value] if isinstance(value, str) else value for name, value in recorded.items()}
        return {
            name: frozenset(d for d in digests if isinstance(d, str))
            for name, digests in listed.items()
            if isinstance(digests, list)
        }

    def final(self, basename: str) -> Path:
        return self.root / basename
