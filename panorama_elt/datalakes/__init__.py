"""Datalake plugins: one module each, imported only when used."""

from __future__ import annotations

import importlib

from panorama_elt.datalakes.base import Datalake
from panorama_elt.errors import SettingsError
from panorama_elt.settings import DatalakeSettings

REGISTRY: dict[str, str] = {
    "local": "panorama_elt.datalakes.local:LocalDatalake",
    "aws": "panorama_elt.datalakes.aws:AwsDatalake",
}


def make_datalake(settings: DatalakeSettings) -> Datalake:
    """Instantiate the plugin for ``settings.type``."""
    try:
        module_name, class_name = REGISTRY[settings.type].split(":")
    except KeyError:
        valid = ", ".join(sorted(REGISTRY))
        raise SettingsError(
            f"datalake.type: unknown datalake type {settings.type!r} (valid: {valid})"
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    instance: Datalake = cls(settings)
    return instance
