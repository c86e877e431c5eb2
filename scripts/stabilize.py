"""Rule stabilize: ComfyUI's picture steadied (vidstab) and evenly lit (deflicker), the planned frames."""

from pathlib import Path

from va.rule_settings import StabilizeSettings, parse_settings
from va.stabilize import stabilize_video
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(StabilizeSettings, snakemake.params.settings)

with rule_step("stabilize", snakemake.log[0], workdir=RUN):
    stabilize_video(SETTINGS, Path(snakemake.input.video), Path(snakemake.output.video))
