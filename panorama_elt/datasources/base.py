"""What every datasource offers: extraction of a table as partitions of rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from panorama_elt.rows import Batches, PartitionKey, Shard
from panorama_elt.settings import DatasourceSettings, TableSettings


@dataclass
class Extraction:
    """A table as a datasource hands it over (the row format: panorama_elt.rows).

    ``batches`` yields the rows in any partition order; the writer groups them into one file
    per partition. ``as_bytes`` says every value is the bytes the source sent (UTF-8 text, or
    a binary column's bytes) or None; otherwise values are str (or bytes for binary columns)
    or None. ``shards`` are more scans of the same table, disjoint from ``batches``, which the
    runner reads in processes of their own at the same time. ``full`` says every partition of
    the table was read, so registered partitions not written no longer exist. ``mark`` is the
    new high-water mark, kept once the table has fully succeeded. ``removed`` names field
    partitions (their values) the source knows are gone, to remove even when the run is not
    ``full``. ``counts`` are what the source counted beyond rows (e.g. courses read and
    skipped), for the run summary; it may add to them while streaming.
    """

    batches: Batches
    full: bool
    mark: str | None = None
    as_bytes: bool = False
    shards: Sequence[Shard] = ()
    removed: Sequence[PartitionKey] = ()
    counts: dict[str, int] = field(default_factory=dict)


class Datasource(ABC):
    """A source of tables; one instance per datasource in the settings."""

    def __init__(self, settings: DatasourceSettings) -> None:
        self.settings = settings

    @abstractmethod
    def test_connection(self) -> str:
        """Check the source answers; return a short description, raise SourceError if not."""

    @abstractmethod
    def extract(self, table: TableSettings, *, force: bool, mark: str | None) -> Extraction:
        """Start extracting ``table``: everything when ``force``, else what changed since ``mark``."""

    def uses_mark(self, table: TableSettings) -> bool:
        """True when extract() reads the table's stored mark (given on runs not forced)."""
        return table.incremental

    def describe(self, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Column names and types of ``tables``, for set-tables-fields."""
        raise NotImplementedError(f"{self.settings.type} datasources do not describe their tables")

    def list_tables(self) -> dict[str, dict[str, str]]:
        """Every table the source offers, as table name -> extra settings keys, for set-tables."""
        raise NotImplementedError(f"{self.settings.type} datasources do not list their tables")

    def close(self) -> None:
        """Release connections."""
