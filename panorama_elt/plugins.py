"""Loads a plugin class named in a registry, importing its module only then."""

from __future__ import annotations

import importlib
from typing import Any

from panorama_elt.errors import SettingsError


def load_plugin(registry: dict[str, str], name: str, setting: str, kind: str) -> Any:
    """The class registered as ``name`` ("module:Class"); an unknown name lists the valid ones."""
    try:
        module_name, class_name = registry[name].split(":")
    except KeyError:
        valid = ", ".join(sorted(registry))
        raise SettingsError(f"{setting}: unknown {kind} type {name!r} (valid: {valid})") from None
    return getattr(importlib.import_module(module_name), class_name)
