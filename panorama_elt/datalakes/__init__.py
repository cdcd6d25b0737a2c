"""Datalake plugins: one module each, imported only when used."""

from __future__ import annotations

from panorama_elt.datalakes.base import Datalake
from panorama_elt.plugins import load_plugin
from panorama_elt.settings import DatalakeSettings

REGISTRY: dict[str, str] = {
    "local": "panorama_elt.datalakes.local:LocalDatalake",
    "aws": "panorama_elt.datalakes.aws:AwsDatalake",
}


def make_datalake(settings: DatalakeSettings) -> Datalake:
    """Instantiate the plugin for ``settings.type``."""
    instance: Datalake = load_plugin(REGISTRY, settings.type, "datalake.type", "datalake")(settings)
    return instance
