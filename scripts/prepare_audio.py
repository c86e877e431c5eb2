"""Rule prepare_audio: pad the voice track as planned."""

from pathlib import Path

from va.rule_settings import AudioSettings, parse_settings
from va.stages import prepare_audio
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(AudioSettings, snakemake.params.settings)

with rule_step("prepare_audio", snakemake.log[0], workdir=RUN):
    prepare_audio(SETTINGS, Path(snakemake.output.padded), Path(snakemake.output.aac), RUN.loudness_record)
