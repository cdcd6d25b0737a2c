"""Datalake plugins: one module each, imported only when used; each type declares its keys here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from panorama_elt.datalakes.lake_settings import AWS, LOCAL
from panorama_elt.plugins import Plugin

if TYPE_CHECKING:
    from panorama_elt.datalakes.base import Datalake
    from panorama_elt.settings import DatalakeSettings

# A settings file without datalake.type gets this one.
DEFAULT_TYPE = "local"

REGISTRY: dict[str, Plugin] = {
    "local": Plugin("panorama_elt.datalakes.local:LocalDatalake", (LOCAL,)),
    "aws": Plugin("panorama_elt.datalakes.aws:AwsDatalake", (AWS,)),
}


def make_datalake(settings: DatalakeSettings) -> Datalake:
    """Instantiate the plugin for ``settings.type`` (validated to be in REGISTRY)."""
    instance: Datalake = REGISTRY[settings.type].load()(settings)
    return instance
