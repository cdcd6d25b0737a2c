"""What every datasource offers: extraction of a table as partitions of rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from panorama_elt.settings import DatasourceSettings, TableSettings

# Values of the field partitions of one group (raw source text, None for NULL).
PartitionKey = tuple[Any, ...]
Rows = Iterator[Sequence[Any]]


@dataclass
class PackedRows:
    """A batch of rows of text values in one bytes object, for sources that can frame them cheaply.

    ``data`` holds, for each row, PACK_ROW, then for each file value PACK_VALUE and its UTF-8
    bytes (or PACK_NULL alone for a NULL), with PACK_PAD bytes anywhere, to be dropped (marker
    bytes defined in panorama_elt.encoding); no value holds a byte of 0xF5 or above, which
    never occur in UTF-8 (the source checks). ``keys`` has each row's partition values
    (one value, or a tuple of them when there are several; raw bytes or None). ``dates`` has
    the values of the date and datetime columns (by index among the values), for counting
    zero dates.
    """

    data: bytes
    rows: int
    keys: list[Any]
    dates: dict[int, list[bytes | None]]


# Lists of rows, each row the values of the table's partition fields then of its file fields;
# or PackedRows.
Batches = Iterator["list[list[Any]] | PackedRows"]


@dataclass
class Extraction:
    """The result of asking a datasource for a table.

    Either ``groups``, which yields (field partition values, rows) one partition at a time (a
    table with no field partitions yields exactly one group with an empty key), or
    ``batches``, which yields lists of rows (or PackedRows) in any partition order, each row
    starting with its partition values (the writer sorts them into files). ``raw`` says every
    value is the bytes the source sent for it (UTF-8 text, or the bytes of a binary column),
    or None. ``shards`` are more scans of the same table, disjoint from ``batches``: picklable
    callables that open their own connection and return their batches, so that each can run
    in a process of its own. ``full`` says every partition of the table was read, so partitions not seen no longer
    exist. ``mark`` is the new high-water mark to keep once the table has fully succeeded.
    ``removed`` names field partitions (their values) the source knows are gone, to remove
    even when the run is not ``full``. ``counts`` are what the source counted beyond rows
    (e.g. courses read and skipped), for the run summary; it may add to them while streaming.
    """

    groups: Iterator[tuple[PartitionKey, Rows]]
    full: bool
    mark: str | None = None
    batches: Batches | None = None
    raw: bool = False
    shards: Sequence[Callable[[], Batches]] = ()
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

    def close(self) -> None:
        """Release connections."""
