"""Writes a table's batches of rows (panorama_elt.rows) into one typed Parquet file per partition.

The same interface as writer.CsvWriter (write_scan -> merge -> finish), so the runner and the
reading processes (shards.py) do not know which format they write. Columns are typed from the
settings' MySQL types (see ``arrow_type``). Zero dates have no Parquet date or timestamp: they
are written as NULL and counted, as the CSV typed views show them.

Memory stays bounded as on the CSV path: converted rows wait in memory up to the same budget
(writer.PENDING_BYTES, all partitions together), then the fullest partitions are written out as
row groups. A partition's row groups go to a segment file written by a ParquetWriter kept open
while the partition receives rows (at most ``OPEN_WRITERS`` at once); ``finish`` joins a
partition's segments, one row group at a time, into its one file.
"""

from __future__ import annotations

import os
from collections import OrderedDict
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

# zstd at its default level: about a third smaller than snappy on the Open edX tables at the
# same writing time (README, Performance); Athena, DuckDB and Spark all read it.
COMPRESSION = "zstd"
# Partitions with a Parquet writer open at once; a partition that gets rows again after its
# writer was closed starts another segment, joined with the first by ``finish``.
OPEN_WRITERS = 8
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
    """A partition's Parquet segments while rows still arrive; ``path`` is its final file."""

    segments: list[Path] = field(default_factory=list)


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
        fields = table.file_fields
        self.schema = pa.schema([pa.field(f.name, arrow_type(f.type)) for f in fields])
        # Each file column: the field, and its index among the row's values (None: constant).
        self._columns: list[tuple[FieldSettings, int | None]] = []
        index = 0
        for f in fields:
            self._columns.append((f, None if f.constant else index))
            index += 0 if f.constant else 1
        self._values = index
        self._open: OrderedDict[Any, pq.ParquetWriter] = OrderedDict()
        self._segments = 0

    def write_scan(self, batches: Iterable[Batch], as_bytes: bool) -> Partitions:
        """Sort the rows of a scan into Parquet segments, one or more per partition."""
        parts: Partitions = {}
        if self._key_length == 0:
            parts[()] = self._new_file()
        pending: dict[Any, list[pa.RecordBatch]] = {}
        pending_bytes = 0
        try:
            for batch in batches:
                keys, values = self._split_keys(batch)
                if not keys:
                    continue
                record, zeros = self._record_batch(values, len(keys))
                groups: dict[Any, list[int]] = {}
                if self._key_length == 0 or len(set(keys)) == 1:
                    groups[keys[0]] = []  # the whole batch
                else:
                    for i, key in enumerate(keys):
                        groups.setdefault(key, []).append(i)
                for key, rows in groups.items():
                    part = parts.get(key)
                    if part is None:
                        part = parts[key] = self._new_file()
                    chunk = record if not rows else record.take(pa.array(rows, pa.int64()))
                    pending.setdefault(key, []).append(chunk)
                    part.rows += chunk.num_rows
                    if zeros is not None:
                        part.zero_dates += sum(zeros[i] for i in rows) if rows else sum(zeros)
                pending_bytes += record.nbytes
                budget = csv_writer.PENDING_BYTES
                if pending_bytes > budget:
                    pending_bytes = self._flush_pending(parts, pending, budget // 2)
                if self.progress is not None:
                    self.progress(len(keys))
            self._flush_pending(parts, pending, None)
        finally:
            self._close_writers()
        return parts

    def merge(self, parts: Partitions, others: Partitions) -> None:
        """Add another scan's partitions (from ``write_scan``) to ``parts``."""
        for key, other in others.items():
            mine = parts.get(key)
            if mine is None:
                parts[key] = other
                continue
            assert isinstance(mine, ParquetPartition) and isinstance(other, ParquetPartition)
            mine.segments.extend(other.segments)
            mine.rows += other.rows
            mine.zero_dates += other.zero_dates

    def finish(self, parts: Partitions, as_bytes: bool) -> list[tuple[Any, Any]]:
        """Join each partition's segments into its one file, then list them as CsvWriter does."""
        for part in parts.values():
            assert isinstance(part, ParquetPartition)
            self._join(part)
        return super().finish(parts, as_bytes)

    # --- files ---------------------------------------------------------------------------

    def _new_file(self) -> ParquetPartition:
        self._files += 1
        return ParquetPartition(self.folder / f"{self.table.name}-{self._files}.parquet")

    def _flush_pending(
        self, parts: Partitions, pending: dict[Any, list[pa.RecordBatch]], keep: int | None
    ) -> int:
        """Write pending rows out, fullest partitions first, until at most ``keep`` bytes stay
        (all of them when ``keep`` is None); return the bytes still pending."""
        sizes = {key: sum(b.nbytes for b in chunks) for key, chunks in pending.items()}
        left = sum(sizes.values())
        for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if keep is not None and left <= keep:
                break
            self._write(key, parts[key], pending.pop(key))
            left -= sizes[key]
        return left

    def _write(self, key: Any, part: PartitionFile, chunks: list[pa.RecordBatch]) -> None:
        """Append rows to the partition's open segment as one row group (opening one if needed)."""
        assert isinstance(part, ParquetPartition)
        writer = self._open.get(key)
        if writer is None:
            if len(self._open) >= OPEN_WRITERS:
                _, oldest = self._open.popitem(last=False)
                oldest.close()
            self._segments += 1
            segment = self.folder / f"{self.table.name}-segment-{self._segments}.parquet"
            writer = self._open[key] = self._parquet_writer(segment)
            part.segments.append(segment)
        else:
            self._open.move_to_end(key)
        writer.write_table(pa.Table.from_batches(chunks, self.schema))

    def _parquet_writer(self, path: Path) -> pq.ParquetWriter:
        return pq.ParquetWriter(path, self.schema, compression=COMPRESSION)

    def _close_writers(self) -> None:
        while self._open:
            _, writer = self._open.popitem()
            writer.close()

    def _join(self, part: ParquetPartition) -> None:
        """Make ``part.path`` the partition's one file: its segments' row groups, in order."""
        if len(part.segments) == 1:
            os.replace(part.segments[0], part.path)
        else:
            with self._parquet_writer(part.path) as out:
                for segment in part.segments:  # none: a table without rows, schema only
                    source = pq.ParquetFile(segment)
                    for i in range(source.num_row_groups):
                        out.write_table(source.read_row_group(i))
                    source.close()
                    segment.unlink()
        part.segments = []

    # --- values --------------------------------------------------------------------------

    def _record_batch(self, batch: Batch, rows: int) -> tuple[pa.RecordBatch, list[int] | None]:
        """A batch as typed columns, and each row's zero dates (None when there are none)."""
        columns = self._source_columns(batch, rows)
        arrays = []
        zeros: pa.Array | None = None
        for f, index in self._columns:
            if index is None:
                values: Sequence[Any] = [f.value] * rows
                array, _ = self._typed(f, pa.array(values, pa.string()))
            else:
                array, zero = self._typed(f, columns[index])
                if zero is not None:
                    counts = pc.cast(zero, pa.int64())
                    zeros = counts if zeros is None else pc.add(zeros, counts)
            arrays.append(array)
        record = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        return record, None if zeros is None else zeros.to_pylist()

    def _source_columns(self, batch: Batch, rows: int) -> list[pa.Array]:
        """The batch's values as one Arrow array per non-constant file column."""
        n = self._values
        if isinstance(batch, PackedRows):
            # Every value behind a value mark (a NULL as the NULL mark alone), rows run together.
            flat = (
                batch.data.translate(None, _DELETE)
                .replace(NULL_MARK, VALUE_MARK + NULL_MARK)
                .split(VALUE_MARK)[1:]
            )
            if len(flat) != rows * n:  # cannot happen for well-formed data: the slow way then
                return self._source_columns(unpack(batch.data), rows)
            null = pa.scalar(NULL_MARK, pa.binary())
            out = []
            for j in range(n):
                column = pa.array(flat[j::n], pa.binary())
                out.append(pc.if_else(pc.equal(column, null), pa.nulls(rows, pa.binary()), column))
            return out
        out = []
        for j, (f, _) in enumerate(c for c in self._columns if c[1] is not None):
            out.append(_to_arrow([row[j] for row in batch], f.type))
        return out

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


def _to_arrow(values: list[Any], ctype: ColumnType) -> pa.Array:
    """One column of a list batch (bytes, text or Python values; None for NULL) as Arrow."""
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
