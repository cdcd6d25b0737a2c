"""What every datasource offers: extraction of a table as partitions of rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from panorama_elt.settings import DatasourceSettings, TableSettings

# Values of the field partitions of one group (raw source text, None for NULL).
PartitionKey = tuple[Any, ...]
Rows = Iterator[Sequence[Any]]


@dataclass
class Extraction:
    """The result of asking a datasource for a table.

    ``groups`` yields (field partition values, rows) one partition at a time; a table with no
    field partitions yields exactly one group with an empty key. ``full`` says every partition
    of the table was read, so partitions not seen no longer exist. ``mark`` is the new
    high-water mark to keep once the table has fully succeeded.
    """

    groups: Iterator[tuple[PartitionKey, Rows]]
    full: bool
    mark: str | None = None


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

    def describe(self, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Column names and types of ``tables``, for set-tables-fields."""
        raise NotImplementedError(f"{self.settings.type} datasources do not describe their tables")

    def close(self) -> None:
        """Release connections."""
