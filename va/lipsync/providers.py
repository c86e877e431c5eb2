"""Lip-sync providers from ``lipsync.providers.json``, and the placeholders of their templates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from va.config import load_config
from va.errors import ExitCode, VaError

PLACEHOLDER = re.compile(r"\{(video|image|audio|output|workdir|fps|seed|home|face_box)\}")


@dataclass(frozen=True)
class Provider:
    """One configured provider: its id and its (validated, defaults filled in) settings."""

    id: str
    settings: dict[str, Any]
    source: Path

    @property
    def type(self) -> str:
        """``command``, ``http`` or ``audiogram``."""
        return str(self.settings["type"])

    @property
    def resources(self) -> ProviderResources:
        """What one lip-sync job of this provider asks a cluster for."""
        return ProviderResources(**self.settings["resources"])


@dataclass(frozen=True)
class ProviderResources:
    """A provider's request to a cluster: the lipsync rule's ``resources`` (profiles/slurm)."""

    cpus: int
    mem_mb: int
    gpus: int
    #: Wall time in minutes.
    runtime: int


#: What joining a cut audio's chunks takes (a stream copy of their videos): no GPU, little memory.
JOIN_RESOURCES = ProviderResources(cpus=1, mem_mb=500, gpus=0, runtime=30)


def load_providers() -> dict[str, Provider]:
    """Every configured provider."""
    config = load_config("lipsync.providers")
    return {pid: Provider(pid, settings, config.path) for pid, settings in config.data["providers"].items()}


def get_provider(provider_id: str) -> Provider:
    """The provider a job names; an unknown id names the config file and the known ids."""
    providers = load_providers()
    if provider_id not in providers:
        source = next(iter(providers.values())).source if providers else "lipsync.providers.json"
        known = ", ".join(sorted(providers)) or "none"
        raise VaError(
            ExitCode.VALIDATION_FAILED,
            f"lipsync.provider: {provider_id!r} is not configured in {source} (known: {known})",
        )
    return providers[provider_id]


def fill(template: str, values: dict[str, str]) -> str:
    """Replace the known ``{name}`` placeholders; any other braces are left as they are."""
    return PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), template)


def fill_tree(node: Any, values: dict[str, str]) -> Any:
    """``fill`` every string inside a JSON-like tree (for rendered config files)."""
    if isinstance(node, str):
        return fill(node, values)
    if isinstance(node, list):
        return [fill_tree(item, values) for item in node]
    if isinstance(node, dict):
        return {key: fill_tree(value, values) for key, value in node.items()}
    return node
