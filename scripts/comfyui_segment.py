"""Rule comfyui_segment: one segment of a template that generates segments, its clip checked."""

from pathlib import Path

from va.comfyui.pool import PoolSettings
from va.comfyui.segment_stage import SegmentFiles, run_segment
from va.rule_settings import SegmentSettings, parse_settings
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(SegmentSettings, snakemake.params.settings)

with rule_step("comfyui_segment", snakemake.log[0], target=SETTINGS.segment.name, workdir=RUN) as report:
    previous = snakemake.input.get("previous")
    files = SegmentFiles(
        still=Path(snakemake.input.still),
        audio=Path(snakemake.input.audio),
        previous=Path(previous) if previous else None,
        clip=Path(snakemake.output.clip),
        record=Path(snakemake.output.record),
    )
    run_segment(
        SETTINGS,
        files=files,
        workdir=RUN,
        report=report,
        pool=PoolSettings.from_params(snakemake.params.pool),
        logs=Path(snakemake.log[0]),
    )
