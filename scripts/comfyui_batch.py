"""Rule comfyui_batch: one batch of frames from ComfyUI."""

from pathlib import Path

from va.comfyui.stage import run_batch
from va.job import load_job
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))

with rule_step("comfyui_batch", snakemake.log[0], target=snakemake.wildcards.batch, workdir=RUN) as report:
    run_batch(
        load_job(Path(snakemake.params.job)),
        Path(snakemake.input.plan),
        snakemake.wildcards.batch,
        still=Path(snakemake.input.still),
        result=Path(snakemake.output.result),
        workdir=RUN.root,
        report=report,
    )
