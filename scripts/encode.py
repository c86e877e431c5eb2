"""Rule encode: the held still (or the lip-synced video) and the padded audio become the final video."""

from pathlib import Path

from va.clean import record_success
from va.rule_settings import EncodeSettings, parse_settings
from va.stages import encode
from va.tracking import rule_step
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(EncodeSettings, snakemake.params.settings)

with rule_step("encode", snakemake.log[0], workdir=RUN):
    encode(
        SETTINGS,
        Path(snakemake.input.loop),
        Path(snakemake.input.audio),
        Path(snakemake.output.final),
        video=Path(snakemake.input.video) if getattr(snakemake.input, "video", None) else None,
        captions=Path(snakemake.input.captions) if getattr(snakemake.input, "captions", None) else None,
        lipsync_result=RUN.lipsync_result
        if SETTINGS.lipsync or SETTINGS.model_sync or RUN.lipsync_result.exists()
        else None,
    )
# The job's end is recorded as soon as its own final is published: a batch stopped later, while other
# jobs run, leaves this one succeeded.
record_success(RUN, SETTINGS.cleanup)
