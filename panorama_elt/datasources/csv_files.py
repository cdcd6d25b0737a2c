"""The ``csv`` datasource: one local CSV file is one table, read as text, streamed."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from panorama_elt.datasources.base import Datasource, Extraction
from panorama_elt.datasources.file_tables import (
    Record,
    column_picks,
    field_names,
    open_error,
    row_batches,
)
from panorama_elt.datasources.source_settings import CsvSettings
from panorama_elt.errors import SourceError
from panorama_elt.settings import DatasourceSettings, TableSettings

# Python's csv module refuses fields over 128 KiB unless told otherwise; text columns of a
# database export are often longer.
_FIELD_LIMIT = 1 << 30


class CsvDatasource(Datasource):
    """Reads ``location``; the header row (when ``header``) names the columns."""

    def __init__(self, settings: DatasourceSettings) -> None:
        super().__init__(settings)
        csv = settings.block(CsvSettings)
        assert csv is not None
        self.csv: CsvSettings = csv

    def test_connection(self) -> str:
        return f"{self.csv.location}: {len(self._first_row())} columns"

    def describe(self, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        header = self._first_row()
        if not self.csv.header:  # no names in the file: column_1, column_2...
            header = [""] * len(header)
        return {name: [(f, "varchar") for f in field_names(header)] for name in tables}

    def extract(self, table: TableSettings, *, force: bool, mark: str | None) -> Extraction:
        return Extraction(self._batches(table), full=True)

    def _batches(self, table: TableSettings) -> Iterator[list[list[Any]]]:
        where = str(self.csv.location)
        if self.csv.header:
            header = self._first_row()
            picks, width = column_picks(table, header, where), len(header)
        else:
            width = len([f for f in table.fields if not f.constant])
            picks = column_picks(table, None, where)
        records = self._records()
        try:
            if self.csv.header:
                next(records, None)
            yield from row_batches(records, picks, width, where)
        finally:
            records.close()

    def _first_row(self) -> list[str]:
        """The header row (or the first row, without a header); an empty file is an error."""
        records = self._records()
        try:
            first = next(records, None)
        finally:
            records.close()
        if first is None:
            raise SourceError(f"{self.csv.location}: the file is empty")
        return [c or "" for c in first[1]]

    def _records(self) -> Generator[Record, None, None]:
        """Each record with the line it starts on; cells are text, or None for ``null_value``."""
        s = self.csv
        where = str(s.location)
        try:
            raw = open(s.location, "rb")  # noqa: SIM115 (closed in the finally below)
        except OSError as exc:
            raise open_error(s.location, exc) from None
        csv.field_size_limit(_FIELD_LIMIT)
        encoding = "utf-8-sig" if codecs.lookup(s.encoding).name == "utf-8" else s.encoding
        decoder = codecs.getincrementaldecoder(encoding)()
        lines = 0

        def text_lines() -> Iterator[str]:
            nonlocal lines
            for chunk in raw:
                lines += 1
                try:
                    yield decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise SourceError(
                        f"{where}: line {lines}: not valid {s.encoding}: {exc.reason} "
                        f"(byte {exc.object[exc.start : exc.start + 1]!r} at column {exc.start + 1})"
                    ) from None
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail

        reader = csv.reader(text_lines(), delimiter=s.delimiter, quotechar=s.quotechar, strict=True)
        try:
            while True:
                start = lines + 1
                try:
                    row = next(reader, None)
                except csv.Error as exc:
                    raise SourceError(f"{where}: line {lines}: {exc}") from None
                if row is None:
                    return
                if not row:
                    continue  # a blank line is no record
                if s.null_value is not None:
                    yield start, [None if c == s.null_value else c for c in row]
                else:
                    yield start, row
        finally:
            raw.close()
