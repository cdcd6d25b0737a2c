"""The one place that picks the writer of a datalake's ``file_format`` (csv or parquet)."""

from __future__ import annotations

from panorama_elt.settings import DatalakeSettings
from panorama_elt.writer import CsvWriter


def writer_class(datalake: DatalakeSettings) -> type[CsvWriter]:
    """The writer class of the datalake's files (pyarrow is imported only for parquet)."""
    if datalake.file_format == "parquet":
        from panorama_elt.parquet_writer import ParquetWriter

        return ParquetWriter
    return CsvWriter
