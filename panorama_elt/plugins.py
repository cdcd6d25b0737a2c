"""Plugin registries: each type names its class and declares the settings keys it reads.

A registry entry is light: the class is imported only when an instance is made, and the
settings blocks come from modules that import no driver, so validating the settings never
imports pymysql, pymongo, boto3 or duckdb.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from panorama_elt.settings_check import Checker


@dataclass(frozen=True)
class SettingsBlock:
    """Keys of a plugin read together into one typed value (say, a MySQL connection).

    ``parse(check, data, path)`` reads them from the plugin's settings mapping ``data``
    (found at YAML path ``path``), reports problems through ``check`` and returns the typed
    value, or None when the block is optional and absent.
    """

    keys: tuple[str, ...]
    parse: Callable[[Checker, Mapping[str, Any], str], Any]


@dataclass(frozen=True)
class TablesContext:
    """What a type's own reader of ``tables`` gets besides the data: the datasource's name, the
    datalake settings (for table name prefixes), and ``common(data, path)``, which parses a
    list of tables the common way."""

    datasource: str
    datalake: Any
    common: Callable[[Any, str], Any]


# How a datasource type reads its ``tables`` when they are not the common list of tables:
# (check, data, path, blocks, context) -> tables, ``blocks`` being the type's parsed settings.
TablesReader = Callable[[Checker, Any, str, tuple[Any, ...], TablesContext], Any]


@dataclass(frozen=True)
class Plugin:
    """One registry entry: ``target`` is "module:Class"; ``blocks`` are the settings it reads;
    ``tables`` reads its table list when that differs from the common one."""

    target: str
    blocks: tuple[SettingsBlock, ...] = ()
    tables: TablesReader | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key of this type's blocks, in declaration order."""
        return tuple(dict.fromkeys(k for block in self.blocks for k in block.keys))

    def load(self) -> Any:
        """The plugin class (its module is imported now)."""
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)


def unknown_type(registry: Mapping[str, Plugin], name: str, kind: str) -> str:
    """The message for a type name no plugin has."""
    return f"unknown {kind} type {name!r} (valid: {', '.join(registry)})"


def misplaced_keys(registry: Mapping[str, Plugin], name: str, kind: str) -> dict[str, str]:
    """Keys other types of ``registry`` read but type ``name`` does not, each with its message."""
    own = set(registry[name].keys)
    found: dict[str, list[str]] = {}
    for other, plugin in registry.items():
        for key in plugin.keys:
            if key not in own:
                found.setdefault(key, []).append(other)
    return {
        key: f"{kind}s of type {name!r} do not read it (only type {' and '.join(others)})"
        for key, others in found.items()
    }
