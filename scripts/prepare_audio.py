"""Rule prepare_audio: pad the voice track and write the plan."""

from pathlib import Path

from va.job import load_job
from va.stages import prepare_audio
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))

with rule_step("prepare_audio", snakemake.log[0], workdir=RUN):
    prepare_audio(
        load_job(Path(snakemake.params.job)),
        Path(snakemake.output.padded),
        Path(snakemake.output.plan),
        Path(snakemake.output.aac),
    )
