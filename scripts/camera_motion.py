"""Rule camera_motion: the held still with the job's camera move, the planned frames at the job's rate."""

from pathlib import Path

from va.motion import render_camera_move
from va.rule_settings import CameraSettings, parse_settings
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(CameraSettings, snakemake.params.settings)

with rule_step("camera_motion", snakemake.log[0], workdir=RUN):
    render_camera_move(SETTINGS, Path(snakemake.input.still), Path(snakemake.output.video))
