"""Streams rows into one encoded CSV file per partition, in a private temp dir."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from panorama_elt.encoding import encode_row, encode_text, encoder_for, file_null
from panorama_elt.errors import SourceError
from panorama_elt.settings import TableSettings

_BUFFER_BYTES = 1 << 20


@dataclass
class WrittenFile:
    """One finished file: where it is and what went into it."""

    path: Path
    rows: int
    bytes: int
    zero_dates: int


class CsvWriter:
    """Writes the rows of one table; one call to ``write`` per partition.

    Rows hold the values of ``table.file_fields`` that are not constants, in order.
    """

    def __init__(
        self,
        table: TableSettings,
        folder: Path,
        compression: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.table = table
        self.progress = progress
        self.folder = folder
        self.compression = compression
        self._count = 0
        fields = table.file_fields
        self._header = encode_row([encode_text(f.name) for f in fields])
        # For every file column: either ("const", encoded) or ("col", index in the row, encoder).
        self._plan: list[tuple[Any, ...]] = []
        index = 0
        self._date_columns: list[int] = []
        for f in fields:
            if f.constant:
                encoded = file_null() if f.value is None else encode_text(f.value)
                self._plan.append(("const", encoded))
            else:
                self._plan.append(("col", index, encoder_for(f.type.kind)))
                if f.type.kind in ("datetime", "date"):
                    self._date_columns.append(index)
                index += 1
        self.width = index

    def write(self, rows: Iterable[Sequence[Any]]) -> WrittenFile:
        """Write one file from ``rows`` and return it; the file is complete on return."""
        self._count += 1
        suffix = ".csv.gz" if self.compression == "gzip" else ".csv"
        path = self.folder / f"{self.table.name}-{self._count}{suffix}"
        null = file_null()
        plan = self._plan
        date_columns = self._date_columns
        rows_written = zero_dates = 0
        raw = open(path, "wb")  # noqa: SIM115 - closed below, possibly through gzip
        try:
            stream: Any = (
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
                if self.compression == "gzip"
                else raw
            )
            out = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=False)
            out.write(self._header)
            lines: list[str] = []
            for row in rows:
                cells = []
                for step in plan:
                    if step[0] == "const":
                        cells.append(step[1])
                    else:
                        value = row[step[1]]
                        cells.append(null if value is None else step[2](value))
                for i in date_columns:
                    value = row[i]
                    if value is not None and _is_zero_date(value):
                        zero_dates += 1
                lines.append(",".join(cells))
                rows_written += 1
                if len(lines) >= 1000:
                    out.write("\n".join(lines) + "\n")
                    lines.clear()
                    if self.progress is not None:
                        self.progress(1000)
            if lines:
                out.write("\n".join(lines) + "\n")
                if self.progress is not None:
                    self.progress(len(lines))
            out.flush()
            out.detach()
            if stream is not raw:
                stream.close()
        except UnicodeError as exc:
            raise SourceError(
                f"{self.table.name}: row {rows_written + 1} holds text that is not valid UTF-8 ({exc})"
            ) from None
        finally:
            raw.close()
        return WrittenFile(path, rows_written, path.stat().st_size, zero_dates)


def _is_zero_date(value: Any) -> bool:
    """MySQL zero or partial-zero dates ('0000-00-00', '2020-00-15'), which views show as NULL."""
    text = value if isinstance(value, str) else str(value)
    return text[:4] == "0000" or text[5:7] == "00" or text[8:10] == "00"
