"""Rule comfyui_batch: every batch of frames from ComfyUI not made yet, each recorded as a step."""

from pathlib import Path

from va.comfyui.pool import PoolSettings
from va.comfyui.stage import run_batches
from va.rule_settings import GenerationSettings, parse_settings
from va.tracking import log_to_file
from va.workdir import Workdir

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake
RUN = Workdir(Path(snakemake.params.run))
SETTINGS = parse_settings(GenerationSettings, snakemake.params.settings)

log_to_file(snakemake.log[0])
run_batches(
    SETTINGS,
    still=Path(snakemake.input.get("still", RUN.still)),  # none when the template binds no start image
    generated=Path(snakemake.output.generated),
    workdir=RUN,
    logs=Path(snakemake.log[0]).with_suffix(""),
    pool=PoolSettings.from_params(snakemake.params.pool),
)
