"""Rule report_contact_sheet: frames of the finished video, tiled into one picture for the report."""

from pathlib import Path

from va.media import render_contact_sheet
from va.tracking import figure_step

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake

with figure_step("report_contact_sheet", snakemake.log[0]):
    render_contact_sheet(Path(snakemake.input.video), Path(snakemake.output.sheet))
