"""Rules lipsync and lipsync_chunk: the job's lip-sync provider turns the held frame and the padded audio
(all of it, or one planned chunk) into a video; lipsync joins the chunks' videos when the audio is cut."""

from pathlib import Path

from va.lipsync.stage import join_chunks, run_lipsync
from va.plan import load_plan
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
CHUNK = snakemake.wildcards.get("chunk")

with rule_step(snakemake.rule, snakemake.log[0], target=CHUNK, workdir=RUN):
    if getattr(snakemake.input, "chunks", None):
        join_chunks(RUN.plan, [Path(clip) for clip in snakemake.input.chunks], Path(snakemake.output.video))
    else:
        run_lipsync(
            load_plan(RUN.plan).as_job(),
            RUN.plan,
            Path(snakemake.input.still),
            Path(snakemake.input.audio),
            Path(snakemake.output.video),
            visual=Path(snakemake.input.visual) if getattr(snakemake.input, "visual", None) else None,
            chunk=CHUNK,
        )
