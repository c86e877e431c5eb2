"""Rule comfyui_segment: one segment of a template that generates segments, its clip checked."""

from pathlib import Path

from va.comfyui.pool import PoolSettings
from va.comfyui.segment_stage import SegmentFiles, run_segment
from va.plan import load_plan
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
NAME = snakemake.wildcards.segment

with rule_step("comfyui_segment", snakemake.log[0], target=NAME, workdir=RUN) as report:
    plan = load_plan(RUN.plan)
    previous = snakemake.input.get("previous")
    files = SegmentFiles(
        still=Path(snakemake.input.still),
        audio=Path(snakemake.input.audio),
        previous=Path(previous) if previous else None,
        clip=Path(snakemake.output.clip),
        record=Path(snakemake.output.record),
    )
    run_segment(
        plan.as_job(), plan.comfyui, NAME, files=files, workdir=RUN, report=report,
        pool=PoolSettings.from_params(snakemake.params.pool), logs=Path(snakemake.log[0]),
    )  # fmt: skip
