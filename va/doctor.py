"""``va doctor``: is this machine ready to run jobs? Required parts fail, optional parts warn."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict, dataclass
from importlib import metadata

from va import media, slurm
from va.comfyui.health import check_health
from va.config import CONFIG_NAMES, load_config
from va.errors import ExitCode, VaError
from va.lipsync.providers import fill
from va.state import refuse_file_in_the_way, state_dir

REQUIRED_ENCODERS = ("libx264", "aac")

#: Filters that only some features use, by feature: a build without them still makes plain videos.
FEATURE_FILTERS: dict[str, tuple[str, ...]] = {
    "stabilize (vidstab)": ("vidstabdetect", "vidstabtransform"),
    "stabilize (deflicker)": ("deflicker",),
    "camera motion": ("perspective",),
    "captions": ("subtitles",),
}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    required: bool = False

    def as_dict(self) -> dict[str, object]:
        """The form of ``--json``."""
        return asdict(self)


def check_ffmpeg() -> list[Check]:
    """ffmpeg and ffprobe found, their versions, and the encoders the output needs."""
    checks = []
    for tool in ("ffmpeg", "ffprobe"):
        try:
            path = media.executable(tool)
            checks.append(Check(tool, "ok", f"{media.tool_version(tool)} ({path})", required=True))
        except VaError as exc:
            checks.append(Check(tool, "fail", exc.message, required=True))
    if checks[0].status == "ok":
        try:
            have = media.encoders()
        except VaError as exc:
            have, detail = set(), exc.message
        missing = [name for name in REQUIRED_ENCODERS if name not in have]
        detail = "libx264 and aac present" if not missing else "missing encoder(s): " + ", ".join(missing)
        checks.append(Check("encoders", "fail" if missing else "ok", detail, required=True))
        checks.append(check_feature_filters())
    return checks


def check_feature_filters() -> Check:
    """The filters of the optional features (stabilize, motion, captions): missing ones warn."""
    try:
        have = media.filters()
    except VaError as exc:
        return Check("filters", "warn", exc.message)
    lacking = [
        f"{feature} needs {', '.join(name for name in names if name not in have)}"
        for feature, names in FEATURE_FILTERS.items()
        if not all(name in have for name in names)
    ]
    if lacking:
        return Check("filters", "warn", "; ".join(lacking))
    return Check("filters", "ok", "the filters of stabilize, camera motion and captions are present")


def check_python() -> list[Check]:
    """Python and Snakemake versions."""
    python = sys.version.split()[0]
    checks = [Check("python", "ok" if sys.version_info >= (3, 11) else "fail", python, required=True)]
    try:
        checks.append(Check("snakemake", "ok", metadata.version("snakemake"), required=True))
    except metadata.PackageNotFoundError:
        checks.append(Check("snakemake", "fail", "not installed (pip install snakemake)", required=True))
    return checks


def check_state_dir() -> Check:
    """The state dir exists and is writable (or can be created by ``va install``)."""
    root = state_dir()
    try:
        refuse_file_in_the_way(root)  # va install could not create it: every run would be refused
    except VaError as exc:
        return Check("state dir", "fail", exc.message)
    if not root.exists():
        return Check("state dir", "warn", f"{root} does not exist yet (va install creates it)")
    if not os.access(root, os.W_OK):
        return Check("state dir", "fail", f"{root} is not writable")
    return Check("state dir", "ok", str(root))


def check_configs() -> tuple[list[Check], dict[str, object]]:
    """Each config resolves and validates; returns the loaded vidax and lip-sync configs for later checks."""
    checks: list[Check] = []
    loaded: dict[str, object] = {}
    for name in CONFIG_NAMES:
        try:
            config = load_config(name)
        except VaError as exc:
            checks.append(Check(f"config {name}", "fail", exc.message))
            continue
        loaded[name] = config.data
        checks.append(Check(f"config {name}", "ok", f"{config.path} ({config.origin})"))
    return checks, loaded


def check_comfyui(vidax: object) -> Check:
    """Whether the configured ComfyUI answers (optional: the held-frame path needs none)."""
    url = "http://127.0.0.1:8188"
    if isinstance(vidax, dict):
        url = vidax.get("comfyui", {}).get("url", url)
    health = check_health(url, timeout=2.0)
    if health.ok:
        return Check(
            "comfyui", "ok", f"{url} answers ({health.endpoint}, version {health.version or 'unknown'})"
        )
    return Check("comfyui", "warn", f"{url} not reachable ({health.message})")


def check_lipsync_providers(providers_config: object) -> list[Check]:
    """Each configured command provider's program can be found."""
    if not isinstance(providers_config, dict):
        return []
    checks = []
    for provider_id, provider in sorted(providers_config.get("providers", {}).items()):
        argv = provider.get("argv") or []
        if provider.get("type") != "command" or not argv:
            checks.append(Check(f"lipsync {provider_id}", "ok", f"type {provider.get('type')}"))
            continue
        program = fill(str(argv[0]), {"home": str(provider.get("home", ""))})
        found = shutil.which(program)
        status, detail = ("ok", found) if found else ("warn", f"command not found: {program}")
        checks.append(Check(f"lipsync {provider_id}", status, str(detail)))
    return checks


def check_slurm() -> Check:
    """Where Slurm's commands are installed, whether its controller answers (optional: only
    ``--profile slurm`` needs Slurm). One that does not slows every Snakemake start, local runs too."""
    answers = slurm.controller_answers()
    if answers is None:
        return Check("slurm", "ok", "not installed (only --profile slurm needs it)")
    if answers:
        return Check("slurm", "ok", "the controller answers scontrol ping")
    return Check(
        "slurm",
        "warn",
        f"scontrol is installed but the controller does not answer within {slurm.PING_SECONDS:g} s: "
        "every Snakemake start that loads the Slurm executor plugin (plain snakemake, va with --profile) "
        "then waits up to 10 s (the plugin asks scontrol show config when it loads); start slurmctld, "
        "or check SlurmctldHost in slurm.conf",
    )


def run_checks() -> list[Check]:
    """Every check, in the order of the report."""
    checks = check_ffmpeg() + check_python() + [check_state_dir()]
    config_checks, loaded = check_configs()
    checks += config_checks
    checks.append(check_comfyui(loaded.get("vidax")))
    checks += check_lipsync_providers(loaded.get("lipsync.providers"))
    checks.append(check_slurm())
    return checks


def exit_code(checks: list[Check]) -> ExitCode:
    """``DEPENDENCY_MISSING`` when a required part failed, ``VALIDATION_FAILED`` for an invalid config.

    Optional parts (ComfyUI, lip-sync programs, a state dir not made yet) only warn.
    """
    if any(c.required and c.status == "fail" for c in checks):
        return ExitCode.DEPENDENCY_MISSING
    if any(c.status == "fail" for c in checks):
        return ExitCode.VALIDATION_FAILED
    return ExitCode.OK
