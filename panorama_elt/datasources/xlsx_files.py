"""The ``xls`` datasource: each sheet of an xlsx workbook is a table (openpyxl, read-only mode).

Cells become text as the sheet shows them: strings as they are, whole numbers without a
decimal point, other numbers in their shortest exact form, dates and times as ISO text,
booleans as TRUE/FALSE; an empty cell is NULL. The first row is the header.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from panorama_elt.datasources.base import Datasource, Extraction
from panorama_elt.datasources.file_tables import (
    Record,
    column_picks,
    field_names,
    open_error,
    row_batches,
)
from panorama_elt.datasources.source_settings import XlsSettings
from panorama_elt.errors import SourceError
from panorama_elt.settings import DatasourceSettings, TableSettings


class XlsxDatasource(Datasource):
    """Reads the sheets of ``location``; a table reads the sheet of its name (or ``sheet``)."""

    def __init__(self, settings: DatasourceSettings) -> None:
        super().__init__(settings)
        xls = settings.block(XlsSettings)
        assert xls is not None
        self.xls: XlsSettings = xls

    def test_connection(self) -> str:
        workbook = self._workbook()
        try:
            return f"{self.xls.location}: sheets {', '.join(workbook.sheetnames)}"
        finally:
            workbook.close()

    def list_tables(self) -> dict[str, dict[str, str]]:
        """One table per sheet, named like a header cell (``Grades 2024`` -> ``grades_2024``)."""
        workbook = self._workbook()
        try:
            sheets = list(workbook.sheetnames)
        finally:
            workbook.close()
        return {
            name: {} if name == sheet else {"sheet": sheet}
            for name, sheet in zip(field_names(sheets), sheets, strict=True)
        }

    def describe(self, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        found = {}
        workbook = self._workbook()
        try:
            for name in tables:
                if self.xls.sheet(name) in workbook.sheetnames:
                    header, _ = self._header(workbook, name)
                    found[name] = [(f, "varchar") for f in field_names(header)]
        finally:
            workbook.close()
        return found

    def extract(self, table: TableSettings, *, force: bool, mark: str | None) -> Extraction:
        return Extraction(self._batches(table), full=True)

    def _batches(self, table: TableSettings) -> Iterator[list[list[Any]]]:
        workbook = self._workbook()
        try:
            header, records = self._header(workbook, table.name)
            where = f"{self.xls.location} sheet {self.xls.sheet(table.name)!r}"
            picks = column_picks(table, header, where)
            yield from row_batches(records, picks, len(header), where)
        finally:
            workbook.close()

    def _workbook(self) -> Any:
        from openpyxl import load_workbook

        try:
            return load_workbook(self.xls.location, read_only=True, data_only=True)
        except OSError as exc:
            raise open_error(self.xls.location, exc) from None
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise SourceError(f"{self.xls.location}: not an xlsx workbook: {exc}") from None

    def _header(self, workbook: Any, table: str) -> tuple[list[str], Iterator[Record]]:
        """The sheet's header cells and its data rows (trimmed to the header's width)."""
        sheet_name = self.xls.sheet(table)
        if sheet_name not in workbook.sheetnames:
            raise SourceError(
                f"{self.xls.location}: no sheet {sheet_name!r} "
                f"(sheets: {', '.join(workbook.sheetnames)})"
            )
        rows = workbook[sheet_name].iter_rows()
        first = next(rows, None)
        cells = [cell_text(c) for c in first or ()]
        while cells and cells[-1] is None:
            cells.pop()
        if not cells:
            raise SourceError(f"{self.xls.location} sheet {sheet_name!r}: no header row")
        width = len(cells)
        where = f"{self.xls.location} sheet {sheet_name!r}"

        def records() -> Iterator[Record]:
            for number, row in enumerate(rows, start=2):
                values = [cell_text(c) for c in row]
                if any(v is not None for v in values[width:]):
                    raise SourceError(
                        f"{where}: row {number}: a value beyond the header's {width} columns"
                    )
                values = (values + [None] * width)[:width]
                if any(v is not None for v in values):  # blank rows are no records
                    yield number, values

        return [c or "" for c in cells], records()


def cell_text(cell: Any) -> str | None:
    """A cell's value as the sheet shows it (see the module docstring)."""
    value = getattr(cell, "value", None)
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, datetime):
        # A date-only format shows the day: no midnight time.
        if _shows_date_only(cell) and value.time() == time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _shows_date_only(cell: Any) -> bool:
    from openpyxl.styles.numbers import is_datetime

    return is_datetime(getattr(cell, "number_format", None) or "General") == "date"
