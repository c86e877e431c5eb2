"""Rule hold_start_frame: render the start image, or a start video's first frame, as the still."""

from pathlib import Path

from va.rule_settings import StillSettings, parse_settings
from va.stages import hold_start_frame
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(StillSettings, snakemake.params.settings)

with rule_step("hold_start_frame", snakemake.log[0], workdir=RUN):
    hold_start_frame(SETTINGS, Path(snakemake.output.still), Path(snakemake.output.loop))
