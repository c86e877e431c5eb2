"""Rules lipsync and lipsync_chunk: the job's lip-sync provider turns the held frame and the padded audio
(all of it, or one planned chunk) into a video; lipsync joins the chunks' videos when the audio is cut."""

from pathlib import Path

from va.lipsync.stage import join_chunks, run_lipsync
from va.rule_settings import LipsyncSettings, parse_settings
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(LipsyncSettings, snakemake.params.settings)
CHUNK = snakemake.wildcards.get("chunk")

with rule_step(snakemake.rule, snakemake.log[0], target=CHUNK, workdir=RUN):
    if getattr(snakemake.input, "chunks", None):
        join_chunks(SETTINGS, [Path(clip) for clip in snakemake.input.chunks], Path(snakemake.output.video))
    else:
        run_lipsync(
            SETTINGS,
            Path(snakemake.input.still),
            Path(snakemake.input.audio),
            Path(snakemake.output.video),
            visual=Path(snakemake.input.visual) if getattr(snakemake.input, "visual", None) else None,
        )
