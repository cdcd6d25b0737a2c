"""Writes a table's batches of rows (panorama_elt.rows) into one typed Parquet file per partition.

The same interface as writer.CsvWriter (write_scan -> merge -> finish), so the runner and the
reading processes (shards.py) do not know which format they write. Columns are typed from the
settings' MySQL types (see ``arrow_type``). Zero dates have no Parquet date or timestamp: they
are written as NULL and counted, as the CSV typed views show them.

Memory stays bounded as on the CSV path: rows of source values wait in memory up to the same
budget (writer.PENDING_BYTES of values, all partitions together, whatever their number), then
the fullest partitions are appended to their spill files in the private temp folder, as
pickled rows (a cheap append; a Parquet row group per spill would be tiny, and slow to write).
``finish`` turns each partition's spills into its Parquet file, converting to typed columns one
row group of about the same budget at a time (zero dates are counted then).
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from panorama_elt import writer as csv_writer
from panorama_elt.column_types import ColumnType
from panorama_elt.errors import SourceError
from panorama_elt.rows import NULL_MARK, PAD_MARK, ROW_MARK, VALUE_MARK, Batch, PackedRows, unpack
from panorama_elt.settings import FieldSettings, TableSettings
from panorama_elt.writer import CsvWriter, PartitionFile, Partitions

# zstd at its default level: the size-b studentmodule files take 39.3 MB against snappy's 54.5
# MB (28% less) for 1.76 s of writing against 1.51 s (README, Performance); Athena, DuckDB and
# Spark all read it.
COMPRESSION = "zstd"
_DELETE = ROW_MARK + PAD_MARK


def arrow_type(ctype: ColumnType) -> pa.DataType:
    """The Parquet (Arrow) type of a source column type: the typed view's type, stored."""
    view_type = ctype.view_type
    if view_type == "BIGINT":
        return pa.int64()
    if view_type == "DOUBLE":
        return pa.float64()
    if view_type.startswith("DECIMAL("):
        precision, scale = view_type[len("DECIMAL(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    if view_type == "TIMESTAMP":
        return pa.timestamp("us")
    if view_type == "DATE":
        return pa.date32()
    if view_type == "VARBINARY":
        return pa.binary()
    return pa.string()  # text, TIME (may be negative or over 24 hours), DECIMAL over 38 digits


@dataclass
class ParquetPartition(PartitionFile):
    """A partition while rows still arrive: the files its rows were spilled to (its own, and
    those of other reading processes); ``path`` is where its Parquet file goes."""

    spills: list[Path] = field(default_factory=list)


class ParquetWriter(CsvWriter):
    """Writes the rows of one table into ``folder`` as Parquet files (see the module docstring).

    Shares the CSV writer's handling of partition keys and of the finished files' list;
    ``compression`` (gzip, for CSV files) does not apply: files are compressed inside.
    """

    def __init__(
        self,
        table: TableSettings,
        folder: Path,
        compression: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(table, folder, None, progress)
        # The system allocator gives freed memory back; pyarrow's default (mimalloc) keeps it,
        # which measured ~45 MiB more peak RSS on a full run (README, Performance).
        pa.set_memory_pool(pa.system_memory_pool())
        fields = table.file_fields
        self.schema = pa.schema([pa.field(f.name, arrow_type(f.type)) for f in fields])
        # Each file column: the field, and its index among the row's values (None: constant).
        self._columns: list[tuple[FieldSettings, int | None]] = []
        index = 0
        for f in fields:
            self._columns.append((f, None if f.constant else index))
            index += 0 if f.constant else 1
        self._values = index
        self._as_bytes = False  # set by write_scan, for the conversion in finish

    def write_scan(self, batches: Iterable[Batch], as_bytes: bool) -> Partitions:
        """Sort the rows of a scan into spill files, one per partition."""
        self._as_bytes = as_bytes
        parts: Partitions = {}
        if self._key_length == 0:
            parts[()] = self._new_file()
        # Per partition: rows of source values, and their estimated bytes.
        pending: dict[Any, list[Sequence[Any]]] = {}
        sizes: dict[Any, float] = {}
        for batch in batches:
            keys, values = self._split_keys(batch)
            if not keys:
                continue
            rows, size = self._rows(values, len(keys))
            row_bytes = size / len(keys)
            if self._key_length == 0:
                pending.setdefault((), []).extend(rows)
                sizes[()] = sizes.get((), 0.0) + size
                parts[()].rows += len(rows)
            else:
                for key, row in zip(keys, rows, strict=True):
                    chunk = pending.get(key)
                    if chunk is None:
                        chunk = pending[key] = []
                        if key not in parts:
                            parts[key] = self._new_file()
                    chunk.append(row)
                for key, count in Counter(keys).items():
                    parts[key].rows += count
                    sizes[key] = sizes.get(key, 0.0) + count * row_bytes
            budget = csv_writer.PENDING_BYTES
            if sum(sizes.values()) > budget:
                self._spill(parts, pending, sizes, budget // 2)
            if self.progress is not None:
                self.progress(len(keys))
        self._spill(parts, pending, sizes, None)
        return parts

    def _append_partition(self, mine: PartitionFile, other: PartitionFile) -> None:
        """Another scan's spilled rows of the same partition join ``mine``'s (see merge)."""
        assert isinstance(mine, ParquetPartition) and isinstance(other, ParquetPartition)
        mine.spills.extend(other.spills)

    def finish(self, parts: Partitions, as_bytes: bool) -> list[tuple[Any, Any]]:
        """Write each partition's Parquet file from its spills, then list them as CsvWriter does."""
        for part in parts.values():
            self._parquet_file(part)
        return super().finish(parts, as_bytes)

    # --- files ---------------------------------------------------------------------------

    def _new_file(self) -> ParquetPartition:
        self._files += 1
        return ParquetPartition(self.folder / f"{self.table.name}-{self._files}.parquet")

    def _spill(
        self,
        parts: Partitions,
        pending: dict[Any, list[Sequence[Any]]],
        sizes: dict[Any, float],
        keep: int | None,
    ) -> None:
        """Append pending rows to their spill files, fullest partitions first, until at most
        ``keep`` bytes stay pending (none when ``keep`` is None)."""
        left = sum(sizes.values())
        for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if keep is not None and left <= keep:
                break
            left -= sizes.pop(key)
            part = parts[key]
            assert isinstance(part, ParquetPartition)
            spill = part.path.with_suffix(".rows")
            with open(spill, "ab") as f:
                pickle.dump(pending.pop(key), f, protocol=pickle.HIGHEST_PROTOCOL)
            if spill not in part.spills:
                part.spills.append(spill)

    def _parquet_file(self, part: PartitionFile) -> None:
        """Write ``part.path`` from the partition's spills, in row groups of about the pending
        budget (converted to typed columns a row group at a time); the spills are removed."""
        assert isinstance(part, ParquetPartition)
        budget = csv_writer.PENDING_BYTES
        with pq.ParquetWriter(part.path, self.schema, compression=COMPRESSION) as out:
            group: list[Sequence[Any]] = []
            size = 0
            for path in part.spills:
                with open(path, "rb") as f:
                    while True:
                        start = f.tell()
                        try:
                            group.extend(pickle.load(f))
                        except EOFError:
                            break
                        size += f.tell() - start
                        if size >= budget:
                            self._write_group(out, part, group)
                            group, size = [], 0
            if group or not part.spills:  # no rows at all: the file holds the schema alone
                self._write_group(out, part, group)
        for path in part.spills:
            path.unlink(missing_ok=True)
        part.spills = []

    def _write_group(
        self, out: pq.ParquetWriter, part: PartitionFile, rows: list[Sequence[Any]]
    ) -> None:
        """One row group of typed columns; its zero dates are counted for the partition."""
        record, zero_dates = self._record_batch(rows)
        part.zero_dates += zero_dates
        out.write_batch(record)

    def _rows(self, batch: Batch, rows: int) -> tuple[list[Sequence[Any]], int]:
        """The rows of a batch as lists of source values (None for NULL), and about how many
        bytes they hold (for the pending budget)."""
        if isinstance(batch, PackedRows):
            n = self._values
            # Every value behind a value mark (a NULL as the NULL mark alone), rows run together.
            flat = (
                batch.data.translate(None, _DELETE)
                .replace(NULL_MARK, VALUE_MARK + NULL_MARK)
                .split(VALUE_MARK)[1:]
            )
            if len(flat) != rows * n:  # cannot happen for well-formed data: the slow way then
                return self._rows(unpack(batch.data), rows)
            values = [None if v == NULL_MARK else v for v in flat]
            return [values[i : i + n] for i in range(0, len(values), n)], len(batch.data)
        size = sum(len(v) for row in batch for v in row if isinstance(v, (bytes, str)))
        return list(batch), size

    def _record_batch(self, rows: list[Sequence[Any]]) -> tuple[pa.RecordBatch, int]:
        """Rows of source values as typed columns, and how many zero dates they held."""
        arrays = []
        zero_dates = 0
        columns = list(zip(*rows, strict=True)) if rows else [()] * self._values
        for f, index in self._columns:
            if index is None:
                values: Sequence[Any] = [f.value] * len(rows)
                array, _ = self._typed(f, pa.array(values, pa.string()))
            else:
                array, zero = self._typed(f, _to_arrow(columns[index], f.type, self._as_bytes))
                if zero is not None:
                    zero_dates += pc.sum(pc.cast(zero, pa.int64())).as_py() or 0
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema), zero_dates

    def _typed(self, f: FieldSettings, column: pa.Array) -> tuple[pa.Array, pa.Array | None]:
        """A column of source text (or binary) as its Parquet type; zero dates as NULL, with
        the mask of where they were (None for columns that are not dates)."""
        target = arrow_type(f.type)
        if pa.types.is_binary(target) or column.type == target:
            return column, None
        try:
            text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
        except pa.ArrowInvalid as exc:
            raise SourceError(
                f"{self.table.name}: column {f.name} holds text that is not valid UTF-8 ({exc})"
            ) from None
        zero = None
        if f.type.kind in ("date", "datetime"):
            zero = pc.fill_null(_zero_dates(text), False)
            text = pc.if_else(zero, pa.nulls(len(text), pa.string()), text)
        if pa.types.is_string(target):
            return text, zero
        try:
            return pc.cast(text, target), zero
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SourceError(
                f"{self.table.name}: column {f.name} ({f.type.written}) holds a value that is "
                f"not a {target} ({exc})"
            ) from None


def _to_arrow(values: Sequence[Any], ctype: ColumnType, as_bytes: bool) -> pa.Array:
    """One column of source values (bytes, text or Python values; None for NULL) as Arrow;
    ``as_bytes``: every value is bytes or None (see Extraction)."""
    kind = ctype.kind
    if kind == "bit":
        numbers = [None if v is None else _bit_number(v) for v in values]
        if arrow_type(ctype) == pa.int64():
            return pa.array(numbers, pa.int64())
        return pa.array([None if v is None else Decimal(v) for v in numbers], pa.decimal128(20, 0))
    if kind == "binary":
        return pa.array(
            [v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v for v in values],
            pa.binary(),
        )
    if as_bytes:
        return pa.array(values, pa.binary())
    # Text as UTF-8 bytes (a lone surrogate stays invalid, and the cast to text names it).
    return pa.array(
        [
            v
            if v is None or isinstance(v, bytes)
            else (v if isinstance(v, str) else str(v)).encode("utf-8", "surrogatepass")
            for v in values
        ],
        pa.binary(),
    )


def _bit_number(value: bytes | str | int) -> int:
    """A BIT(n) value (big-endian bytes from MySQL) as its unsigned integer."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = value.encode("latin-1")
    return int.from_bytes(value, "big")


def _zero_dates(text: pa.Array) -> pa.Array:
    """Where a date or datetime text is a MySQL zero or partial-zero date ('0000-00-00',
    '2020-00-15'): year 0000, month 00 or day 00."""
    year = pc.equal(pc.utf8_slice_codeunits(text, 0, 4), "0000")
    month = pc.equal(pc.utf8_slice_codeunits(text, 5, 7), "00")
    day = pc.equal(pc.utf8_slice_codeunits(text, 8, 10), "00")
    return pc.or_(pc.or_(year, month), day)
