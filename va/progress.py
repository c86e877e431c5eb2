"""What ``va run`` shows while a run goes, made from its events: a line a rule start and end, the
warnings (retries, waits for ComfyUI), and for the ComfyUI stage one progress line: batches done of
total, frames, the sampler step and an ETA. On a terminal that line is a live tqdm bar; otherwise it is
a plain line each time a batch is done.

Errors are not shown here: a run's error ends the run, and the CLI prints it once, as its last line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from va.events import Event, format_event
from va.manifest import GenerationProgress
from va.plan import previous_plan
from va.workdir import Workdir

BATCH_RULE = "comfyui_batch"


def batches_note(progress: GenerationProgress) -> str:
    """The ComfyUI stage's progress as ``va status`` and the plain progress lines say it (in batches, or
    in segments for a template that generates them)."""
    if "segments_total" in progress:
        note = f"{progress.get('segments_done')} of {progress['segments_total']} segments"
    else:
        note = f"{progress.get('batches_done')} of {progress.get('batches_total')} batches"
    if progress["frames_total"] is not None:
        note += f", {progress['frames_done']} of {progress['frames_total']} frames"
    return note


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"
    )


class RunDisplay:
    """Called with each event of a run (``va.runner.run_job``'s ``on_event``); ``close()`` at the end."""

    def __init__(self, workdir: Path, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.workdir = Workdir(workdir)
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.bar: tqdm[Any] | None = None
        self.batches: dict[str, int] = {}  # every batch of the plan: its frames
        self.done: set[str] = set()
        self.step = ""
        self.started: float | None = None
        self.made_here = 0  # batches this run made (not found done): the ETA's pace

    def __call__(self, event: Event) -> None:
        kind, level = event.get("kind", ""), event.get("level")
        if level == "error":
            return
        if event.get("rule") == BATCH_RULE or kind == "comfyui_waiting":
            batch = str(event.get("target") or event.get("batch") or "")
            self._comfyui(kind, batch, event.get("outcome"), f"step {event.get('value')}/{event.get('max')}")
            if level == "warning" and event.get("outcome") != "transient":  # its wait says it
                self._print(format_event(event))
            return
        if kind.startswith("rule_") or level == "warning":
            if kind == "rule_started" and event.get("rule") == "assemble_visual":
                self._close_bar()
            self._print(format_event(event))

    def close(self) -> None:
        """End the live line (the run is over)."""
        self._close_bar()

    # --- the ComfyUI stage ---------------------------------------------------------------------------

    def _comfyui(self, kind: str, batch: str, outcome: str | None, step: str) -> None:
        """An event of the ComfyUI stage: of ``batch``, its ``outcome`` (an attempt) or sampler ``step``."""
        if not self.batches:
            self._start_stage()
        if kind == "rule_started":
            self.done.discard(batch)  # made again (its record was stale)
            self.step = ""
        elif kind == "progress":
            self.step = step
        elif kind == "comfyui_attempt" and outcome == "succeeded" and batch in self.batches:
            self.done.add(batch)
            self.made_here += 1
            self.step = ""
            if not self.live:
                self._print(f"comfyui: {self._line()}")
        self._update_bar()

    def _start_stage(self) -> None:
        plan = previous_plan(self.workdir.plan)
        batches = plan.comfyui.batches if plan is not None and plan.comfyui is not None else ()
        self.batches = {batch.name: batch.frames for batch in batches}
        self.done = {name for name in self.batches if self.workdir.batch_result(name).exists()}
        self.started = time.monotonic()
        if self.live:
            self.bar = tqdm(
                total=sum(self.batches.values()),
                initial=self._frames_done(),
                unit="frame",
                desc="comfyui",
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
            )

    def _frames_done(self) -> int:
        return sum(self.batches[name] for name in self.done if name in self.batches)

    def _eta(self) -> str:
        left = len(self.batches) - len(self.done)
        if not self.made_here or self.started is None:
            return "?"
        return _clock((time.monotonic() - self.started) / self.made_here * left)

    def _line(self) -> str:
        progress: GenerationProgress = {
            "batches_done": len(self.done),
            "batches_total": len(self.batches),
            "frames_done": self._frames_done(),
            "frames_total": sum(self.batches.values()),
        }
        return ", ".join(part for part in (batches_note(progress), self.step, f"ETA {self._eta()}") if part)

    def _update_bar(self) -> None:
        if self.bar is None:
            return
        self.bar.n = self._frames_done()
        postfix = f"{len(self.done)} of {len(self.batches)} batches" + (f", {self.step}" if self.step else "")
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self._update_bar()
            self.bar.close()
            self.bar = None

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
