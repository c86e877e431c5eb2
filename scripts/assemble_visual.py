"""Rule assemble_visual: the batches' frames or clips, or the segments' clips, become one video of the
target frame count."""

from pathlib import Path

from va.comfyui.assemble import assemble_segments, assemble_visual, generated_batches
from va.plan import load_plan
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))

with rule_step("assemble_visual", snakemake.log[0], workdir=RUN):
    plan = load_plan(RUN.plan)
    video = Path(snakemake.output.video)
    clips = snakemake.input.get("segments")
    if clips:
        assemble_segments(plan, [Path(clip) for clip in clips], video)
    else:
        assemble_visual(plan, generated_batches(Path(snakemake.input.generated)), video)
