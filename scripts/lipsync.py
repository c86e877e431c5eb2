"""Rule lipsync: the job's lip-sync provider turns the held frame and the padded audio into a video."""

from pathlib import Path

from va.lipsync.stage import run_lipsync
from va.plan import load_plan
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))

with rule_step("lipsync", snakemake.log[0], workdir=RUN):
    run_lipsync(
        load_plan(RUN.plan).as_job(),
        RUN.plan,
        Path(snakemake.input.still),
        Path(snakemake.input.audio),
        Path(snakemake.output.video),
        visual=Path(snakemake.input.visual) if getattr(snakemake.input, "visual", None) else None,
    )
