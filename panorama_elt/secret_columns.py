"""Columns whose names say they hold credentials (password hashes, API secrets, tokens, keys)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from panorama_elt.settings import FieldSettings, TableSettings

log = logging.getLogger("panorama_elt")

_SUFFIXES = ("_password", "_secret", "_token", "_key")


def looks_secret(column: str) -> bool:
    """True for ``password`` and names ending in _password, _secret, _token or _key."""
    name = column.lower()
    return name == "password" or name.endswith(_SUFFIXES)


def secret_columns(tables: Iterable[TableSettings]) -> list[tuple[TableSettings, FieldSettings]]:
    """The fields of ``tables`` that are read from the source and look like credentials."""
    return [(t, f) for t in tables for f in t.fields if not f.constant and looks_secret(f.name)]


def warn_secret_columns(tables: Iterable[TableSettings]) -> None:
    """One warning line per such column: it is copied into the lake (still loaded, as before)."""
    for table, column in secret_columns(tables):
        log.warning(
            "%s.%s: this column looks like a password or secret and is copied into the "
            "datalake; to write NULL instead, give the field `value: null` (%s)",
            table.name,
            column.name,
            f"{table.path}.fields[{table.fields.index(column)}]",
        )
