"""Writes a table's batches of rows (panorama_elt.rows) into one encoded CSV file per partition.

Rows of a partition may come in any order, mixed with other partitions' rows: the writer keeps
encoded lines in memory up to a fixed budget (whatever the table's size or number of
partitions) and appends the fullest partitions to their files when it is reached. Files are
written plain in a private folder; ``finish`` compresses them when the datalake asks for gzip.
"""

from __future__ import annotations

import gzip
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panorama_elt.encoding import encode_row, encode_text, encoder_for, file_null
from panorama_elt.errors import SourceError
from panorama_elt.rows import (
    Batch,
    PackedRows,
    PartitionKey,
    encode_packed,
    pack_rows,
    unpack,
)
from panorama_elt.settings import TableSettings

if TYPE_CHECKING:
    from panorama_elt.shards import Workers

log = logging.getLogger("panorama_elt")
_FILE_NULL = file_null()

_BUFFER_BYTES = 1 << 20
# Encoded lines held in memory, all partitions together, before the fullest are appended to
# their files: the memory a table takes, whatever its size.
PENDING_BYTES = 4 << 20
# translate() table: the digit 0 becomes 1, every other byte 0.
_ZEROS = bytes(1 if b == ord("0") else 0 for b in range(256))


@dataclass
class WrittenFile:
    """One finished file: where it is and what went into it."""

    path: Path
    rows: int
    bytes: int
    zero_dates: int


@dataclass
class PartitionFile:
    """A partition's plain file while rows still arrive (picklable: reading processes send
    theirs back). ``rows`` counts the rows given to it, written or still pending."""

    path: Path
    rows: int = 0
    zero_dates: int = 0
    started: bool = False  # the header is in the file
    # Bytes of the longest block of lines (one batch's) given to the file: no line is longer,
    # which a reader of the file sizes its buffer by (parquet_writer).
    longest: int = 0
    # Other scans' files of the same partition, for a writer that reads them where they are
    # (parquet_writer) instead of appending them to ``path``.
    more: list[Path] = field(default_factory=list)


# The partition files of a scan, by partition key as the rows hold it: () for a table without
# field partitions, the value itself for one partition field, a tuple of values for several.
Partitions = dict[Any, PartitionFile]


class CsvWriter:
    """Writes the rows of one table into ``folder``.

    ``write`` does a whole table; a table read by several processes is ``write_scan`` in each,
    ``merge`` of the others' partitions, then ``finish``.
    """

    def __init__(
        self,
        table: TableSettings,
        folder: Path,
        compression: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.table = table
        self.folder = folder
        self.compression = compression
        self.progress = progress
        self._files = 0
        fields = table.file_fields
        self._header = encode_row([encode_text(f.name) for f in fields]).encode("utf-8")
        # How many partition values start each row.
        self._key_length = len(table.partition_fields)
        # For every file column: ("const", its file form) or ("col", index in the row, encoder).
        self._plan: list[tuple[Any, ...]] = []
        # The same for rows of bytes: converters of the columns that are not text, and where the
        # constants go (as bytes; NULL as None).
        self._byte_converters: list[tuple[int, Callable[[bytes], bytes]]] = []
        self._constant_bytes: list[tuple[int, bytes | None]] = []
        self._date_columns: list[int] = []
        index = 0
        for position, f in enumerate(fields):
            if f.constant:
                self._plan.append(
                    ("const", _FILE_NULL if f.value is None else encode_text(f.value))
                )
                self._constant_bytes.append(
                    (position, None if f.value is None else str(f.value).encode("utf-8"))
                )
                continue
            self._plan.append(("col", index, encoder_for(f.type.kind)))
            if f.type.kind == "binary":
                self._byte_converters.append((index, _binary_text))
            elif f.type.kind == "bit":
                self._byte_converters.append((index, _bit_text))
            if f.type.kind in ("datetime", "date"):
                self._date_columns.append(index)
            index += 1

    def write(
        self, batches: Iterable[Batch], as_bytes: bool
    ) -> list[tuple[PartitionKey, WrittenFile]]:
        """Write a whole table from one scan; see ``finish`` for what comes back."""
        return self.finish(self.write_scan(batches, as_bytes), as_bytes)

    def write_scan(self, batches: Iterable[Batch], as_bytes: bool) -> Partitions:
        """Sort the rows of a scan into one plain file per partition.

        A table without field partitions gets exactly one file, even when it has no rows.
        ``as_bytes``: the values are the bytes the source sent (see Extraction).
        """
        parts: Partitions = {}
        if self._key_length == 0:
            parts[()] = self._new_file()
        pending: dict[Any, list[bytes]] = {}
        pending_bytes = 0
        for batch in batches:
            keys, values = self._split_keys(batch)
            if not keys:
                continue
            encoded, zero_dates = self._encode(values, as_bytes, partial(_row_in, parts, keys))
            if self._key_length == 0:
                # One file: nothing to group, so each batch goes straight to it (one block of
                # lines, joined to the next by a line end like lines are).
                single = parts[()]
                self._append(single, [encoded[:-1]])
                single.rows += len(keys)
                single.longest = max(single.longest, len(encoded))
                single.zero_dates += zero_dates
                if self.progress is not None:
                    self.progress(len(keys))
                continue
            for key, line in zip(keys, encoded.split(b"\n"), strict=False):
                chunk = pending.get(key)
                if chunk is None:
                    chunk = pending[key] = []
                    if key not in parts:
                        parts[key] = self._new_file()
                chunk.append(line)
            for key, count in Counter(keys).items():
                part = parts[key]
                part.rows += count
                part.longest = max(part.longest, len(encoded))
            if zero_dates:
                for key, count in zip(keys, self._zero_dates_by_row(values), strict=True):
                    parts[key].zero_dates += count
            pending_bytes += len(encoded)
            if pending_bytes > PENDING_BYTES:
                pending_bytes = self._flush(parts, pending, pending_bytes, PENDING_BYTES // 2)
            if self.progress is not None:
                self.progress(len(keys))
        self._flush(parts, pending, pending_bytes, None)
        for part in parts.values():
            if not part.started:  # a table without rows: its file has the header alone
                self._append(part, [])
        return parts

    def merge(self, parts: Partitions, others: Partitions) -> None:
        """Add another scan's partition files (from ``write_scan``) to ``parts``."""
        for key, other in others.items():
            mine = parts.get(key)
            if mine is None:
                parts[key] = other
                continue
            self._append_partition(mine, other)
            mine.rows += other.rows
            mine.zero_dates += other.zero_dates
            mine.longest = max(mine.longest, other.longest)

    def _append_partition(self, mine: PartitionFile, other: PartitionFile) -> None:
        """Move the rows of ``other`` (the same partition, another scan) into ``mine``'s file."""
        with open(other.path, "rb") as src, open(mine.path, "ab") as dest:
            src.seek(len(self._header))
            shutil.copyfileobj(src, dest, _BUFFER_BYTES)
        other.path.unlink()

    def finish(
        self, parts: Partitions, as_bytes: bool, workers: Workers | None = None
    ) -> list[tuple[PartitionKey, WrittenFile]]:
        """The finished files with their partition values, as the catalog takes them (see
        ``partition_values``); compressed first when the datalake asks for gzip. ``workers``:
        processes a writer may hand work to (the CSV writer has none to give)."""
        written = []
        for key, part in parts.items():
            path = part.path
            if self.compression == "gzip":
                path = _gzip(path, f"{self.table.name}.csv")
            values = () if self._key_length == 0 else (key,) if self._key_length == 1 else key
            written.append(
                (
                    self.partition_values(values, as_bytes),
                    WrittenFile(path, part.rows, path.stat().st_size, part.zero_dates),
                )
            )
        return written

    def partition_values(self, values: Sequence[Any], as_bytes: bool) -> PartitionKey:
        """Partition values as text (bytes decoded; binary and BIT values written as in the
        files, which is what the typed views decode), or None."""
        if not as_bytes:
            return tuple(values)
        kinds = [self.table.field(name).type.kind for name in self.table.partition_fields]
        as_text = {"binary": _binary_text, "bit": _bit_text}
        try:
            return tuple(
                None if v is None else as_text.get(kind, bytes)(v).decode("utf-8")
                for v, kind in zip(values, kinds, strict=True)
            )
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{self.table.name}: a partition value is not valid UTF-8 ({exc})"
            ) from None

    # --- files ---------------------------------------------------------------------------

    def _new_file(self) -> PartitionFile:
        self._files += 1
        return PartitionFile(self.folder / f"{self.table.name}-{self._files}.csv")

    def _append(self, part: PartitionFile, lines: list[bytes]) -> None:
        with open(part.path, "ab" if part.started else "wb") as f:
            if not part.started:
                f.write(self._header)
                part.started = True
            if lines:
                lines.append(b"")
                f.write(b"\n".join(lines))

    def _flush(
        self,
        parts: Partitions,
        pending: dict[Any, list[bytes]],
        pending_bytes: int,
        keep: int | None,
    ) -> int:
        """Append pending lines to their files, fullest partitions first, until about ``keep``
        bytes stay (all of them when ``keep`` is None); return the bytes still pending.

        A partition's bytes are estimated from the average line: exact enough for a budget.
        """
        count = sum(map(len, pending.values()))
        line = pending_bytes / count if count else 0.0
        for key in sorted(pending, key=lambda k: len(pending[k]), reverse=True):
            if keep is not None and pending_bytes <= keep:
                break
            lines = pending.pop(key)
            pending_bytes -= round(len(lines) * line)
            self._append(parts[key], lines)
        return max(pending_bytes, 0) if pending else 0

    # --- encoding ------------------------------------------------------------------------

    def _split_keys(self, batch: Batch) -> tuple[list[Any], Batch]:
        """Each row's partition key, and the batch without them."""
        if isinstance(batch, PackedRows):
            return (batch.keys if self._key_length else [()] * batch.rows), batch
        n = self._key_length
        if n == 0:
            return [()] * len(batch), batch
        if n == 1:
            return [row[0] for row in batch], [row[1:] for row in batch]
        return [tuple(row[:n]) for row in batch], [row[n:] for row in batch]

    def _encode(
        self, batch: Batch, as_bytes: bool, row_number: Callable[[int], int]
    ) -> tuple[bytes, int]:
        """The file lines of a batch (ending with a line end) and how many zero dates it has."""
        if isinstance(batch, PackedRows):
            encoded = encode_packed(batch.data)
            if encoded is not None:
                return encoded, sum(count_zero_dates(v) for v in batch.dates.values())
            batch = unpack(batch.data)
        elif as_bytes and batch and self._plan:
            data = pack_rows(self._with_constants(batch))
            if data is not None:
                encoded = encode_packed(data)
                if encoded is not None:
                    dates = [[row[i] for row in batch] for i in self._date_columns]
                    return encoded, sum(count_zero_dates(v) for v in dates)
        return self._encode_exact(batch, row_number)

    def _with_constants(self, rows: list[list[Any]]) -> list[list[Any]]:
        """Rows of bytes as the files hold them: binary and BIT values as text, constants in."""
        converters, constants = self._byte_converters, self._constant_bytes
        if not converters and not constants:
            return rows
        out = []
        for row in rows:
            row = list(row)
            for i, convert in converters:
                value = row[i]
                if value is not None and isinstance(value, bytes):
                    row[i] = convert(value)
            for position, value in constants:
                row.insert(position, value)
            out.append(row)
        return out

    def _encode_exact(
        self, rows: list[list[Any]], row_number: Callable[[int], int]
    ) -> tuple[bytes, int]:
        """Value by value; names a value that is not UTF-8 by its row."""
        lines = []
        zero_dates = 0
        for n, row in enumerate(rows):
            try:
                lines.append(self._line(row))
            except UnicodeError as exc:
                raise SourceError(
                    f"{self.table.name}: row {row_number(n)} holds text that is not valid UTF-8 ({exc})"
                ) from None
            zero_dates += self._row_zero_dates(row)
        lines.append("")
        try:
            return "\n".join(lines).encode("utf-8"), zero_dates
        except UnicodeError as exc:  # lone surrogates in str values
            raise SourceError(
                f"{self.table.name}: a row holds text that is not valid UTF-8 ({exc})"
            ) from None

    def _line(self, row: Sequence[Any]) -> str:
        """One encoded line (without its line end) from the values of one row."""
        null = _FILE_NULL
        cells = []
        for step in self._plan:
            if step[0] == "const":
                cells.append(step[1])
            else:
                value = row[step[1]]
                cells.append(null if value is None else step[2](value))
        return ",".join(cells)

    def _zero_dates_by_row(self, batch: Batch) -> list[int]:
        """Zero dates in each row of a batch (the slow way: only for batches that have some)."""
        if isinstance(batch, PackedRows):
            columns = list(batch.dates.values())
            return [
                sum(1 for values in columns if _non_null_zero_date(values[i]))
                for i in range(batch.rows)
            ]
        return [self._row_zero_dates(row) for row in batch]

    def _row_zero_dates(self, row: Sequence[Any]) -> int:
        return sum(1 for i in self._date_columns if _non_null_zero_date(row[i]))


def _row_in(parts: Partitions, keys: list[Any], i: int) -> int:
    """The row number, within its partition's file, of row ``i`` of a batch (for messages)."""
    key = keys[i]
    before = parts[key].rows if key in parts else 0
    return before + sum(1 for k in keys[:i] if k == key) + 1


def _binary_text(value: bytes) -> bytes:
    """A binary value as the lowercase hex encode_binary writes."""
    return value.hex().encode("ascii")


def _bit_text(value: bytes) -> bytes:
    """A BIT value as the unsigned integer encode_bit writes."""
    return str(int.from_bytes(value, "big")).encode("ascii")


def _gzip(plain: Path, name: str) -> Path:
    """Compress a finished plain file next to it, with ``name`` in the gzip header.

    The sync flush before closing is what earlier versions wrote: the same bytes.
    """
    packed = plain.with_name(plain.name + ".gz")
    with (
        open(plain, "rb") as src,
        open(packed, "wb") as dest,
        gzip.GzipFile(name, mode="wb", compresslevel=6, fileobj=dest, mtime=0) as out,
    ):
        shutil.copyfileobj(src, out, _BUFFER_BYTES)
        out.flush()
    plain.unlink()
    return packed


def count_zero_dates(values: list[bytes | None]) -> int:
    """How many values are zero dates (see _is_zero_date), NULLs ignored.

    In bulk when the values are ASCII of one length, as a date column's are: the characters at
    each offset of every value are one strided slice of the joined values, and the values where
    the offsets _is_zero_date looks at all hold '0' are the bits set in an AND of those slices.
    """
    present = [v for v in values if v is not None]
    if not present:
        return 0
    size = len(present[0])
    joined = b"".join(present)
    if len(joined) != size * len(present) or not joined.isascii() or size < 1:
        return sum(1 for v in present if _is_zero_date(v))
    if len(set(map(len, present))) != 1:
        return sum(1 for v in present if _is_zero_date(v))
    found = 0
    for offsets in ((0, 1, 2, 3), (5, 6), (8, 9)):
        if offsets[-1] >= size:
            continue
        hits = -1
        for k in offsets:
            hits &= int.from_bytes(joined[k::size].translate(_ZEROS), "little")
        found |= hits
    return found.bit_count()


def _non_null_zero_date(value: Any) -> bool:
    return value is not None and _is_zero_date(value)


def _is_zero_date(value: Any) -> bool:
    """MySQL zero or partial-zero dates ('0000-00-00', '2020-00-15'), which views show as NULL."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else str(value)
    return text[:4] == "0000" or text[5:7] == "00" or text[8:10] == "00"
