"""Rule report_sync: the sync check's track, the mouth's opening over the voice's loudness, drawn for the
report."""

from pathlib import Path

from va.atomic import read_json
from va.lipsync.sync import SyncTrack
from va.lipsync.sync_figure import draw_track
from va.tracking import figure_step

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821, PLW0127 - injected by Snakemake

with figure_step("report_sync", snakemake.log[0]):
    track = SyncTrack.from_dict(read_json(Path(snakemake.input.track)))
    draw_track(track, read_json(Path(snakemake.input.result))["sync"], Path(snakemake.output.figure))
