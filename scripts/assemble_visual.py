"""Rule assemble_visual: the batches' frames or clips, or the segments' clips, become one video of the
target frame count."""

from pathlib import Path

from va.comfyui.assemble import assemble_segments, assemble_visual, generated_batches
from va.rule_settings import AssembleSettings, parse_settings
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(AssembleSettings, snakemake.params.settings)

with rule_step("assemble_visual", snakemake.log[0], workdir=RUN):
    video = Path(snakemake.output.video)
    if SETTINGS.segments:
        assemble_segments(SETTINGS, [Path(clip) for clip in snakemake.input.segments], video)
    else:
        assemble_visual(SETTINGS, generated_batches(Path(snakemake.input.generated)), video)
