"""Rule assemble_visual: the batches' frames or clips become one video of the target frame count."""

from pathlib import Path

from va.comfyui.assemble import assemble_visual, generated_batches
from va.rule_settings import AssembleSettings, parse_settings
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(AssembleSettings, snakemake.params.settings)

with rule_step("assemble_visual", snakemake.log[0], workdir=RUN):
    assemble_visual(
        SETTINGS, generated_batches(Path(snakemake.input.generated)), Path(snakemake.output.video)
    )
