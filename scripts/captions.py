"""Rule captions: the job's captions as captions.srt and captions.vtt, in the video's time."""

from pathlib import Path

from va.rule_settings import CaptionsSettings, parse_settings
from va.timeline import render_captions
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(CaptionsSettings, snakemake.params.settings)

with rule_step("captions", snakemake.log[0], workdir=RUN):
    render_captions(SETTINGS, Path(snakemake.output.srt), Path(snakemake.output.vtt))
