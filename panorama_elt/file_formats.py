"""The one place that picks the writer of a datalake's ``file_format`` (csv or parquet)."""

from __future__ import annotations

from panorama_elt.settings import DatalakeSettings
from panorama_elt.shards import Workers
from panorama_elt.writer import CsvWriter


def writer_class(datalake: DatalakeSettings) -> type[CsvWriter]:
    """The writer class of the datalake's files."""
    if datalake.file_format == "parquet":
        from panorama_elt.parquet_writer import ParquetWriter

        return ParquetWriter
    return CsvWriter


def conversion_workers(datalake: DatalakeSettings) -> Workers | None:
    """The processes a run hands work to that its writer does not do as it goes: the Parquet
    conversion; None for CSV."""
    if datalake.file_format == "parquet":
        from panorama_elt.parquet_writer import conversion_workers as parquet_workers

        return parquet_workers()
    return None
