"""What the file datasources (csv, xls) share: header names, column mapping, row batches."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from panorama_elt.errors import SourceError
from panorama_elt.settings import TableSettings

BATCH_ROWS = 1000
_NOT_NAME = re.compile(r"[^a-z0-9_]+")

# One record of a file: its line (or sheet row) number and its cells (text, or None for NULL).
Record = tuple[int, Sequence[str | None]]


def field_names(header: Sequence[str | None]) -> list[str]:
    """Identifiers for a header row: lower case, other characters as ``_``, unique, never empty."""
    names: list[str] = []
    for i, cell in enumerate(header, start=1):
        name = _NOT_NAME.sub("_", (cell or "").strip().lower()).strip("_")
        if not name:
            name = f"column_{i}"
        elif name[0].isdigit():
            name = f"_{name}"
        base, n = name, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def column_picks(table: TableSettings, header: Sequence[str] | None, where: str) -> list[int]:
    """For each value of an extracted row (partition fields, then non-constant file fields),
    the index of its column in the file: by header name, or by position without a header."""
    read = [f.name for f in table.fields if not f.constant]
    order = list(table.partition_fields) + [f.name for f in table.file_fields if not f.constant]
    if header is None:
        position = {name: i for i, name in enumerate(read)}
        return [position[name] for name in order]
    columns = {name: i for i, name in enumerate(field_names(header))}
    missing = [name for name in order if name.lower() not in columns]
    if missing:
        raise SourceError(
            f"{where}: the header has no column {', '.join(missing)} "
            f"(it has {', '.join(columns) or 'none'})"
        )
    return [columns[name.lower()] for name in order]


def row_batches(
    records: Iterable[Record], picks: list[int], width: int, where: str
) -> Iterator[list[list[Any]]]:
    """Rows of the picked cells in batches; a record of another width fails the table."""
    batch: list[list[Any]] = []
    for line, cells in records:
        if len(cells) != width:
            raise SourceError(
                f"{where}: line {line}: {len(cells)} fields, expected {width}"
                f" ({'too many' if len(cells) > width else 'too few'})"
            )
        batch.append([cells[i] for i in picks])
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def open_error(path: Path, exc: OSError) -> SourceError:
    """One line for a file that cannot be opened."""
    reason = "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
    return SourceError(f"{path}: {reason}")
