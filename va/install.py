"""``va install``: the state dir, the example configs, the bundled workflows, the assets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from va.assets import (
    AssetOutcome,
    AssetOutcomeData,
    asset_status,
    copy_without_overwriting,
    install_assets,
    load_assets_manifest,
)
from va.config import CONFIG_NAMES, REPO_CONFIG, user_config_dir
from va.errors import ExitCode, VaError, place_unusable
from va.state import check_state_dir, state_dir

REPO_ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: Bundled files copied into the state dir, so that the copied assets manifest's relative sources resolve.
BUNDLED = ("workflows",)


class InstallData(TypedDict):
    """An install's report as JSON (``--json`` and the API)."""

    state_dir: str
    assets_manifest: str | None
    files: dict[str, str]
    assets: list[AssetOutcomeData]
    downloaded: int


@dataclass
class InstallReport:
    """What ``va install`` did."""

    state_dir: Path
    files: dict[str, str] = field(default_factory=dict)
    assets: list[AssetOutcome] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def downloaded(self) -> int:
        """Assets fetched this time."""
        return sum(1 for outcome in self.assets if outcome.status == "installed")

    def failure(self) -> VaError | None:
        """The first asset problem, if any: it decides the exit code."""
        return next((o.error for o in self.assets if o.error is not None), None)

    def as_dict(self) -> InstallData:
        """The form of ``--json`` output and of the API."""
        return {
            "state_dir": str(self.state_dir),
            "assets_manifest": str(self.manifest) if self.manifest else None,
            "files": self.files,
            "assets": [outcome.as_dict() for outcome in self.assets],
            "downloaded": self.downloaded,
        }


def ensure_state_dir() -> Path:
    """Create ``$VA_STATE_DIR/state`` (and its config folder); refuse one that cannot be written."""
    root = check_state_dir()
    try:
        user_config_dir().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise place_unusable(ExitCode.STATE_DIR_UNUSABLE, "state dir", root, exc) from exc
    return root


def install(
    *, force: bool = False, with_optional: bool = False, progress: bool = True, configs: bool = True
) -> InstallReport:
    """Create the state dir, copy the example configs and bundled files, fetch the assets. Without
    ``configs`` (VIDAX) the operator's configs are neither copied nor replaced: only assets are installed."""
    root = ensure_state_dir()
    report = InstallReport(root)
    for name in CONFIG_NAMES if configs else ():
        target = user_config_dir() / f"{name}.json"
        report.files[str(target.relative_to(root))] = copy_without_overwriting(
            REPO_CONFIG / f"{name}.json", target, force
        )
    for folder in BUNDLED:
        for source in sorted((REPO_ASSETS / folder).glob("*.json")):
            target = root / "assets" / folder / source.name
            report.files[str(target.relative_to(root))] = copy_without_overwriting(source, target, force)
    manifest = load_assets_manifest()
    report.manifest = manifest.path
    report.assets = install_assets(manifest, root, with_optional=with_optional, progress=progress)
    return report


def status() -> InstallReport:
    """Which assets are present, missing or mismatched; changes nothing."""
    root = state_dir()
    manifest = load_assets_manifest()
    report = InstallReport(root, manifest=manifest.path)
    report.assets = (
        asset_status(manifest, root)
        if root.exists()
        else [AssetOutcome(a.id, "missing", a.destination) for a in manifest.assets]
    )
    return report
