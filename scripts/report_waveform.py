"""Rule report_waveform: the padded voice (the final video's audio) drawn as one picture for the report."""

from pathlib import Path

from va.media import render_waveform
from va.tracking import figure_step

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake

with figure_step("report_waveform", snakemake.log[0]):
    render_waveform(Path(snakemake.input.audio), Path(snakemake.output.waveform))
