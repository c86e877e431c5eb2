"""Rule captions: the job's captions as captions.srt and captions.vtt, in the video's time."""

from pathlib import Path

from va.plan import load_plan
from va.timeline import render_captions
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))

with rule_step("captions", snakemake.log[0], workdir=RUN):
    render_captions(
        load_plan(RUN.plan).as_job(),
        RUN.plan,
        Path(snakemake.output.srt),
        Path(snakemake.output.vtt),
    )
