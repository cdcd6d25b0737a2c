"""Checks of single settings values, collecting every problem with its YAML key path.

Shared by the core settings (tables, fields, partitions) and by the plugins' own settings
blocks, which import only this module: declaring a plugin's keys never imports its driver.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def is_identifier(name: object) -> bool:
    """True for a plain SQL identifier: letters, digits and underscores, not starting with a digit."""
    return isinstance(name, str) and IDENTIFIER.match(name) is not None


class Checker:
    """Reads values out of YAML mappings; each problem is kept as ``<key path>: <message>``."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def interpolate(self, value: Any, path: str) -> Any:
        """``value`` with every ``${NAME}`` replaced by that environment variable."""
        if isinstance(value, str):

            def env(match: re.Match[str]) -> str:
                name = match[1]
                if name not in os.environ:
                    self.fail(path, f"environment variable {name} is not set")
                    return ""
                return os.environ[name]

            return _ENV.sub(env, value)
        if isinstance(value, list):
            return [self.interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.interpolate(v, join(path, str(k))) for k, v in value.items()}
        return value

    def mapping(
        self,
        value: Any,
        path: str,
        allowed: Iterable[str],
        what: str,
        elsewhere: Mapping[str, str] | None = None,
    ) -> dict | None:
        """``value`` if it is a mapping; each key not in ``allowed`` is a problem.

        ``elsewhere`` maps keys that belong elsewhere (another plugin type's) to the message
        saying so, instead of guessing a spelling.
        """
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping of {what}, got {kind_of(value)}")
            return None
        allowed = tuple(allowed)
        for key in value:
            if key in allowed:
                continue
            if elsewhere and key in elsewhere:
                self.fail(join(path, str(key)), elsewhere[key])
                continue
            hint = closest(str(key), allowed)
            self.fail(
                join(path, str(key)),
                "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""),
            )
        return value

    def text(self, data: Mapping, key: str, path: str, *, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None or value == "":
            if required:
                self.fail(join(path, key), "is required")
            return None
        if isinstance(value, (bool, list, dict)):
            self.fail(join(path, key), f"must be text, got {kind_of(value)}")
            return None
        return str(value)

    def identifier(
        self, data: Mapping, key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = self.text(data, key, path, required=required)
        if value is not None and not is_identifier(value):
            self.fail(
                join(path, key),
                f"{value!r} is not a plain identifier (letters, digits and _, not starting with a digit)",
            )
            return None
        return value

    def integer(self, data: Mapping, key: str, path: str, default: int, low: int, high: int) -> int:
        value = data.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            self.fail(join(path, key), f"must be a whole number, got {kind_of(value)}")
            return default
        try:
            number = int(str(value))
        except ValueError:
            self.fail(join(path, key), f"must be a whole number, got {value!r}")
            return default
        if not low <= number <= high:
            self.fail(join(path, key), f"must be between {low} and {high}, got {number}")
            return default
        return number

    def boolean(self, data: Mapping, key: str, path: str, default: bool) -> bool:
        value = self.optional_boolean(data, key, path)
        return default if value is None else value

    def optional_boolean(self, data: Mapping, key: str, path: str) -> bool | None:
        """True, False, or None when the key is not set (so a default can depend on others)."""
        value = data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        self.fail(join(path, key), f"must be true or false, got {value!r}")
        return None

    def local_path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(os.path.expanduser(value))
        # Relative paths are relative to the settings file, so cron may run from anywhere.
        return p if p.is_absolute() else (self.base_dir / p).resolve()


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def key_set(data: Mapping, key: str) -> bool:
    """True when ``key`` has a value (an empty string counts as unset, as a blank ${ENV} does)."""
    return data.get(key) not in (None, "")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return f"text ({value!r})"


def closest(key: str, allowed: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.75)
    return matches[0] if matches else None
