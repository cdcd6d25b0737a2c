"""What every datalake offers: files under keys, raw tables, partitions and typed views."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from panorama_elt.paths import object_key
from panorama_elt.settings import DatalakeSettings, TableSettings

# Registered partition values: base partitions then field partitions, encoded text.
PartitionValues = tuple[str, ...]


class Datalake(ABC):
    """A destination; one instance per run."""

    #: The SQL dialect its typed views are written in (see views.py).
    dialect = "duckdb"

    def __init__(self, settings: DatalakeSettings) -> None:
        self.settings = settings

    def key(self, table: TableSettings, values: PartitionValues) -> str:
        """The object key of one partition's file."""
        return object_key(table, self.settings, values)

    @abstractmethod
    def test_connection(self) -> list[tuple[str, bool, str]]:
        """Checks as (what, ok, detail) lines."""

    @abstractmethod
    def upload(self, local_file: Path, key: str) -> None:
        """Put a finished file at ``key``; it becomes visible only complete."""

    def upload_async(self, local_file: Path, key: str) -> None:
        """Start putting a file at ``key``; ``wait_uploads`` waits for it (default: upload now)."""
        self.upload(local_file, key)

    def wait_uploads(self) -> None:
        """Wait until every ``upload_async`` file is in place; raise if any upload failed."""

    @abstractmethod
    def create_table(self, table: TableSettings) -> None:
        """Create or update the raw table (idempotent)."""

    @abstractmethod
    def drop_table(self, table: TableSettings) -> None:
        """Drop the raw table and its typed view, keeping the files (idempotent)."""

    @abstractmethod
    def create_view(self, table: TableSettings) -> None:
        """Create or replace the typed view."""

    @property
    def view_qualifier(self) -> str | None:
        """The schema that analytics views name their tables in (None: unqualified)."""
        return None

    @abstractmethod
    def create_sql_view(self, name: str, athena_select: str, source: str) -> None:
        """Create or replace view ``name`` as one SELECT written in Athena SQL.

        ``source`` (a file, or a built-in view's name) is named in any error.
        """

    @abstractmethod
    def drop_sql_view(self, name: str) -> None:
        """Drop view ``name`` if it exists."""

    @abstractmethod
    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only query in the lake's own SQL; its column names and rows."""

    @abstractmethod
    def partitions(self, table: TableSettings) -> set[PartitionValues]:
        """Partitions registered for the table (all installations)."""

    @abstractmethod
    def file_formats(self, table: TableSettings) -> set[str]:
        """The file formats (csv, parquet) of the table's registered files, all installations."""

    @abstractmethod
    def add_partitions(self, table: TableSettings, partitions: Iterable[PartitionValues]) -> None:
        """Register partitions whose files are in place."""

    @abstractmethod
    def remove_partitions(
        self, table: TableSettings, partitions: Iterable[PartitionValues]
    ) -> None:
        """Unregister partitions and delete their files."""

    @abstractmethod
    def read_state(self, key: str) -> str | None:
        """A small state document (high-water marks), or None."""

    @abstractmethod
    def write_state(self, key: str, text: str) -> None:
        """Replace a small state document atomically."""

    def close(self) -> None:
        """Release connections."""
