"""Rule stabilize: ComfyUI's picture steadied (vidstab) and evenly lit (deflicker), the planned frames."""

from pathlib import Path

from va.plan import load_plan
from va.stabilize import stabilize_video
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))

with rule_step("stabilize", snakemake.log[0], workdir=RUN):
    stabilize_video(load_plan(RUN.plan), Path(snakemake.input.video), Path(snakemake.output.video))
