"""Streams rows into one encoded CSV file per partition, in a private temp dir."""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import operator
import os
import pickle
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from panorama_elt.datasources.base import Batches, PackedRows, PartitionKey
from panorama_elt.encoding import (
    PACK_NULL,
    PACK_ROW,
    PACK_VALUE,
    encode_packed,
    encode_row,
    encode_text,
    encoder_for,
    file_null,
    unpack,
)
from panorama_elt.errors import SourceError
from panorama_elt.settings import TableSettings

log = logging.getLogger("panorama_elt")
_FILE_NULL = file_null()

_BUFFER_BYTES = 1 << 20
# Encoded rows of a partitioned table held in memory, all partitions together, before the
# biggest are appended to their files: the memory a table takes, whatever its size.
PENDING_BYTES = 4 << 20
# translate() table: the digit 0 becomes 1, every other byte 0.
_ZEROS = bytes(1 if b == ord("0") else 0 for b in range(256))
_BELOW_MARKERS = bytes(range(0xF5))  # translate(None, this) keeps only marker-range bytes
_ROW_START = bytes([PACK_ROW, PACK_VALUE])
_VALUE = bytes([PACK_VALUE])
_NULL = bytes([PACK_NULL])


@dataclass
class WrittenFile:
    """One finished file: where it is and what went into it."""

    path: Path
    rows: int
    bytes: int
    zero_dates: int


@dataclass
class _Partition:
    """A partition's file while rows still arrive."""

    path: Path
    rows: int = 0
    zero_dates: int = 0


class CsvWriter:
    """Writes the rows of one table: ``write`` for one file, ``write_batches`` for a whole scan.

    Rows hold the values of ``table.file_fields`` that are not constants, in order.
    """

    def __init__(
        self,
        table: TableSettings,
        folder: Path,
        compression: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.table = table
        self.progress = progress
        self.folder = folder
        self.compression = compression
        self._count = 0
        fields = table.file_fields
        self._header = encode_row([encode_text(f.name) for f in fields])
        # For every file column: either ("const", encoded) or ("col", index in the row, encoder).
        self._plan: list[tuple[Any, ...]] = []
        # The raw path's view of the same: converters of the columns that are not text, and
        # where the constants go (their value as raw bytes, NULL as the NULL marker).
        self._raw_converters: list[tuple[int, Callable[[bytes], bytes]]] = []
        self._raw_constants: list[tuple[int, bytes]] = []
        index = 0
        self._date_columns: list[int] = []
        for position, f in enumerate(fields):
            if f.constant:
                encoded = file_null() if f.value is None else encode_text(f.value)
                self._plan.append(("const", encoded))
                raw = _NULL if f.value is None else str(f.value).encode("utf-8")
                self._raw_constants.append((position, raw))
            else:
                self._plan.append(("col", index, encoder_for(f.type.kind)))
                if f.type.kind == "binary":
                    self._raw_converters.append((index, _raw_binary))
                elif f.type.kind == "bit":
                    self._raw_converters.append((index, _raw_bit))
                if f.type.kind in ("datetime", "date"):
                    self._date_columns.append(index)
                index += 1
        self.width = index
        self._constant_nulls = sum(1 for _, raw in self._raw_constants if raw is _NULL)

    def _new_path(self, suffix: str | None = None) -> Path:
        self._count += 1
        if suffix is None:
            suffix = ".csv.gz" if self.compression == "gzip" else ".csv"
        return self.folder / f"{self.table.name}-{self._count}{suffix}"

    def write(self, rows: Iterable[Sequence[Any]]) -> WrittenFile:
        """Write one file from ``rows`` and return it; the file is complete on return."""
        path = self._new_path()
        rows_written = zero_dates = 0
        raw = open(path, "wb")  # noqa: SIM115 - closed below, possibly through gzip
        try:
            stream: Any = (
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
                if self.compression == "gzip"
                else raw
            )
            out = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=False)
            out.write(self._header)
            lines: list[str] = []
            for row in rows:
                lines.append(self._line(row))
                zero_dates += self._row_zero_dates(row)
                rows_written += 1
                if len(lines) >= 1000:
                    out.write("\n".join(lines) + "\n")
                    lines.clear()
                    if self.progress is not None:
                        self.progress(1000)
            if lines:
                out.write("\n".join(lines) + "\n")
                if self.progress is not None:
                    self.progress(len(lines))
            out.flush()
            out.detach()
            if stream is not raw:
                stream.close()
        except UnicodeError as exc:
            raise SourceError(
                f"{self.table.name}: row {rows_written + 1} holds text that is not valid UTF-8 ({exc})"
            ) from None
        finally:
            raw.close()
        return WrittenFile(path, rows_written, path.stat().st_size, zero_dates)

    def write_batches(
        self,
        batches: Iterable[list[list[Any]] | PackedRows],
        width: int,
        raw: bool,
        shards: Sequence[Callable[[], Batches]] = (),
    ) -> list[tuple[PartitionKey, WrittenFile]]:
        """Write a whole scan: rows in batches, each row its ``width`` partition values first.

        Rows of a partition may come in any order and mixed with others; each partition gets
        one file, complete when this returns, and the files come back in partition order.
        A table without field partitions (``width`` 0) gets exactly one file. ``raw``: the
        values are the bytes the source sent (see Extraction), encoded a batch at a time.
        ``shards`` are more scans of the same table (see Extraction): each runs in a process
        of its own, at the same time as this one, and its files are appended to these.
        """
        if width == 0 and not shards:
            return [((), self._write_single(batches, raw, self.compression))]
        with _ShardProcesses(self, shards, width, raw) as others:
            if width == 0:
                single = self._write_single(batches, raw, None)
                parts = {(): _Partition(single.path, single.rows, single.zero_dates)}
            else:
                parts = self._write_partitions(batches, width, raw)
            for key, path, rows, zero_dates in others.results():
                self._merge(parts, key, _Partition(Path(path), rows, zero_dates))
        written = []
        order = self._key_order(width)
        for n, key in enumerate(sorted(parts, key=order), start=1):
            part = parts[key]
            if self.compression == "gzip":
                # Named like the n-th file write() makes: gzip keeps the name in its header.
                _gzip_in_place(part, f"{self.table.name}-{n}.csv")
            values = () if width == 0 else (key,) if width == 1 else key
            written.append(
                (
                    self._partition_values(values, raw),
                    WrittenFile(part.path, part.rows, part.path.stat().st_size, part.zero_dates),
                )
            )
        return written

    def _key_order(self, width: int) -> Callable[[Any], Any]:
        """Partitions in the order of an ORDER BY on their fields: NULL first, numbers by
        value, text and time by their bytes (a binary collation), dates as written."""
        kinds = [self.table.field(name).type.kind for name in self.table.partition_fields]

        def one(value: Any, kind: str) -> tuple[bool, Any]:
            if value is None:
                return (False, b"")
            if kind in ("integer", "decimal", "float"):
                with contextlib.suppress(ArithmeticError, ValueError):
                    text = value.decode() if isinstance(value, bytes) else str(value)
                    return (True, Decimal(text))
            return (True, value if isinstance(value, bytes) else str(value).encode("utf-8"))

        if width == 1:
            return lambda key: one(key, kinds[0])
        return lambda key: tuple(one(v, k) for v, k in zip(key, kinds, strict=True))

    def _write_partitions(
        self, batches: Iterable[list[list[Any]] | PackedRows], width: int, raw: bool
    ) -> dict[Any, _Partition]:
        """Sort rows into one plain file per partition (keys as the rows hold them)."""
        parts: dict[Any, _Partition] = {}
        pending: dict[Any, list[bytes]] = {}
        pending_bytes = 0
        for batch in batches:
            if isinstance(batch, PackedRows):
                keys = batch.keys
            elif width == 1:
                keys = [row[0] for row in batch]
                batch = [row[1:] for row in batch]
            else:
                keys = [tuple(row[:width]) for row in batch]
                batch = [row[width:] for row in batch]
            encoded, zero_dates = self._encode(batch, raw, partial(_row_in, parts, keys))
            lines = encoded.split(b"\n")
            for key, line in zip(keys, lines, strict=False):
                chunk = pending.get(key)
                if chunk is None:
                    chunk = pending[key] = []
                    if key not in parts:
                        parts[key] = _Partition(self._new_path(suffix=".csv"))
                chunk.append(line)
            if zero_dates:
                for key, count in zip(keys, self._zero_dates_by_row(batch), strict=True):
                    parts[key].zero_dates += count
            pending_bytes += len(encoded)
            if pending_bytes > PENDING_BYTES:
                pending_bytes = self._flush(parts, pending, pending_bytes, PENDING_BYTES // 2)
            if self.progress is not None:
                self.progress(len(keys))
        self._flush(parts, pending, pending_bytes, None)
        return parts

    def _merge(self, parts: dict[Any, _Partition], key: Any, other: _Partition) -> None:
        """Add a shard's file of a partition to this writer's (its header dropped)."""
        mine = parts.get(key)
        if mine is None:
            parts[key] = other
            return
        with open(other.path, "rb") as src, open(mine.path, "ab") as dest:
            src.seek(len(self._header.encode("utf-8")))
            shutil.copyfileobj(src, dest, _BUFFER_BYTES)
        other.path.unlink()
        mine.rows += other.rows
        mine.zero_dates += other.zero_dates

    def _write_single(
        self, batches: Iterable[list[list[Any]] | PackedRows], raw: bool, compression: str | None
    ) -> WrittenFile:
        """The one file of a table without field partitions."""
        path = self._new_path(".csv.gz" if compression == "gzip" else ".csv")
        rows_written = zero_dates = 0
        with open(path, "wb", buffering=_BUFFER_BYTES) as plain:
            out: Any = (
                gzip.GzipFile(fileobj=plain, mode="wb", compresslevel=6, mtime=0)
                if compression == "gzip"
                else plain
            )
            out.write(self._header.encode("utf-8"))
            for batch in batches:
                encoded, zeros = self._encode(batch, raw, partial(operator.add, rows_written + 1))
                out.write(encoded)
                count = batch.rows if isinstance(batch, PackedRows) else len(batch)
                rows_written += count
                zero_dates += zeros
                if self.progress is not None:
                    self.progress(count)
            if out is not plain:
                out.flush()  # a sync flush before the end, as write() does: the same bytes
                out.close()
        return WrittenFile(path, rows_written, path.stat().st_size, zero_dates)

    def _flush(
        self,
        parts: dict[Any, _Partition],
        pending: dict[Any, list[bytes]],
        pending_bytes: int,
        keep: int | None,
    ) -> int:
        """Append pending lines to their files, fullest partitions first, until about ``keep``
        bytes stay (all of them when ``keep`` is None); return the bytes still pending.

        The bytes of a partition are estimated from the average line: exact enough for a budget.
        """
        rows = sum(map(len, pending.values()))
        line = pending_bytes / rows if rows else 0.0
        for key in sorted(pending, key=lambda k: len(pending[k]), reverse=True):
            if keep is not None and pending_bytes <= keep:
                break
            part = parts[key]
            lines = pending.pop(key)
            with open(part.path, "ab") as f:
                if part.rows == 0:
                    f.write(self._header.encode("utf-8"))
                part.rows += len(lines)
                pending_bytes -= round(len(lines) * line)
                lines.append(b"")
                f.write(b"\n".join(lines))
        return max(pending_bytes, 0) if pending else 0

    def _encode(
        self,
        batch: list[list[Any]] | PackedRows,
        raw: bool,
        row_number: Callable[[int], int],
    ) -> tuple[bytes, int]:
        """The file lines of a batch (its values only, no keys) and how many zero dates it has."""
        if isinstance(batch, PackedRows):
            encoded = encode_packed(batch.data)
            if encoded is not None:
                return encoded, sum(count_zero_dates(v) for v in batch.dates.values())
            batch = unpack(batch.data)
        elif raw and self._plan:
            data = self._pack(batch)
            if data is not None:
                encoded = encode_packed(data)
                if encoded is not None:
                    zeros = [[row[i] for row in batch] for i in self._date_columns]
                    return encoded, sum(count_zero_dates(v) for v in zeros)
        return self._encode_exact(batch, row_number)

    def _pack(self, rows: list[list[Any]]) -> bytes | None:
        """Rows of raw values in packed form, or None if some value is not raw text."""
        converters = self._raw_converters
        constants = self._raw_constants
        nulls = self._constant_nulls * len(rows)
        bodies = []
        try:
            for row in rows:
                if converters or constants:
                    row = list(row)
                    for i, convert in converters:
                        value = row[i]
                        if value is not None:
                            row[i] = convert(value)
                    for position, value in constants:
                        row.insert(position, value)
                if None in row:
                    nulls += row.count(None)
                    row = [_NULL if v is None else v for v in row]
                bodies.append(_ROW_START + _VALUE.join(row))
        except TypeError:
            return None  # not bytes after all: the exact path knows what to do
        data = b"".join(bodies)
        # Every marker is one we put there: no value holds a byte that is not UTF-8 text.
        markers = len(rows) * (1 + len(self._plan)) + nulls
        if len(data.translate(None, _BELOW_MARKERS)) != markers:
            return None
        return data.replace(_VALUE + _NULL, _NULL)

    def _zero_dates_by_row(self, batch: list[list[Any]] | PackedRows) -> list[int]:
        """Zero dates in each row of a batch (the slow way: only for batches that have some)."""
        if isinstance(batch, PackedRows):
            columns = list(batch.dates.values())
            return [
                sum(1 for values in columns if _non_null_zero_date(values[i]))
                for i in range(batch.rows)
            ]
        return [self._row_zero_dates(row) for row in batch]

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

    def _row_zero_dates(self, row: Sequence[Any]) -> int:
        return sum(1 for i in self._date_columns if row[i] is not None and _is_zero_date(row[i]))

    def _encode_exact(
        self, rows: list[list[Any]], row_number: Callable[[int], int]
    ) -> tuple[bytes, int]:
        """Value by value, as ``write`` does; reports a value that is not UTF-8 by its row."""
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

    def _partition_values(self, values: Iterable[Any], raw: bool) -> PartitionKey:
        """Partition values as the catalog takes them: text (raw bytes decoded; binary and BIT
        values written as in the files, which is what the typed views decode), or None."""
        if not raw:
            return tuple(values)
        kinds = [self.table.field(name).type.kind for name in self.table.partition_fields]
        as_text = {"binary": _raw_binary, "bit": _raw_bit}
        try:
            return tuple(
                None if v is None else as_text.get(kind, bytes)(v).decode("utf-8")
                for v, kind in zip(values, kinds, strict=True)
            )
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{self.table.name}: a partition value is not valid UTF-8 ({exc})"
            ) from None


class _ShardProcesses:
    """The processes writing the other shards of a scan, each into a folder of its own.

    Started on entry, so they run while this process writes its own shard; ``results`` waits
    for them. Leaving the block in any other way (an error, SIGTERM) stops them first: their
    files live in this writer's folder, which the caller removes. Each is a fresh interpreter
    (not a fork: this process may hold threads, DuckDB's or uploads') that imports only what
    a shard needs, and gets its job and sends its result as pickles over its stdin and stdout.
    """

    def __init__(
        self, writer: CsvWriter, shards: Sequence[Callable[[], Batches]], width: int, raw: bool
    ) -> None:
        self.writer = writer
        self.jobs = [(shard, width, raw) for shard in shards]
        self.running: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> _ShardProcesses:
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([package_root, *([path] if path else [])]),
        }
        for n, (shard, width, raw) in enumerate(self.jobs, start=1):
            folder = self.writer.folder / f"shard-{n}"
            folder.mkdir()
            job = pickle.dumps((shard, self.writer.table, folder, width, raw))
            process = subprocess.Popen(
                [sys.executable, "-c", "from panorama_elt.writer import shard_main; shard_main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            self.running.append(process)
            assert process.stdin is not None
            with process.stdin:
                process.stdin.write(job)
            process.stdin = None  # closed: communicate() must not flush it
        return self

    def results(self) -> list[tuple[Any, str, int, int]]:
        """(key, path, rows, zero dates) of every file the shards wrote; raise if one failed."""
        found = []
        for process in self.running:
            out, err = process.communicate()
            try:
                kind, payload = pickle.loads(out)
            except (pickle.UnpicklingError, EOFError, ValueError):
                detail = err.decode("utf-8", "replace").strip()[-2000:]
                raise SourceError(
                    f"{self.writer.table.name}: a reading process ended without a result "
                    f"(exit code {process.returncode}){': ' + detail if detail else ''}"
                ) from None
            if kind == "source":
                raise SourceError(payload)
            if kind != "ok":
                # A bug in the reading process: this table fails, the others still run.
                log.debug("reading process traceback:\n%s", payload)
                last = str(payload).strip().splitlines()[-1] if str(payload).strip() else "?"
                raise SourceError(
                    f"{self.writer.table.name}: a reading process failed: {last} "
                    "(--debug shows its traceback)"
                )
            found.extend(payload)
        return found

    def __exit__(self, *exc: object) -> None:
        for process in self.running:
            if process.returncode is None:  # not waited for by results()
                process.kill()
                process.communicate()


def shard_main() -> None:
    """A shard process: write the rows of its shard into plain files, send back what it wrote."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    try:
        shard, table, folder, width, raw = pickle.loads(sys.stdin.buffer.read())
        writer = CsvWriter(table, folder)
        if width == 0:
            single = writer._write_single(shard(), raw, None)
            files = [((), str(single.path), single.rows, single.zero_dates)]
        else:
            parts = writer._write_partitions(shard(), width, raw)
            files = [(k, str(p.path), p.rows, p.zero_dates) for k, p in parts.items()]
        result: tuple[str, Any] = ("ok", files)
    except SourceError as exc:
        result = ("source", str(exc))
    except Exception:  # noqa: BLE001 - a bug: the parent raises it with this traceback
        result = ("bug", traceback.format_exc())
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.flush()


def _row_in(parts: dict[Any, _Partition], keys: list[Any], i: int) -> int:
    """The row number, within its partition's file, of row ``i`` of a batch (for messages)."""
    key = keys[i]
    before = parts[key].rows if key in parts else 0
    return before + sum(1 for k in keys[:i] if k == key) + 1


def _raw_binary(value: bytes) -> bytes:
    """A binary value as the lowercase hex encode_binary writes."""
    return value.hex().encode("ascii")


def _raw_bit(value: bytes) -> bytes:
    """A BIT value as the unsigned integer encode_bit writes."""
    return str(int.from_bytes(value, "big")).encode("ascii")


def _gzip_in_place(part: _Partition, name: str) -> None:
    """Compress a finished plain file, with ``name`` in the gzip header.

    The same bytes as compressing while writing, as write() does: deflate's output does not
    depend on how its input is cut, and write() ends with a sync flush before closing.
    """
    plain = part.path
    part.path = plain.with_name(plain.name + ".gz")
    with (
        open(plain, "rb") as src,
        open(part.path, "wb") as dest,
        gzip.GzipFile(name, mode="wb", compresslevel=6, fileobj=dest, mtime=0) as out,
    ):
        shutil.copyfileobj(src, out, _BUFFER_BYTES)
        out.flush()
    plain.unlink()


def count_zero_dates(values: list[bytes | None]) -> int:
    """How many raw values are zero dates (see _is_zero_date), NULLs ignored.

    In bulk when the values are ASCII of one length, as a date column's are: the characters at
    each offset of every value are one strided slice of the joined values, and the values where
    the offsets _is_zero_date looks at all hold '0' are the bits set in an AND of those slices.
    """
    present = [v for v in values if v is not None]
    if not present:
        return 0
    width = len(present[0])
    joined = b"".join(present)
    if len(joined) != width * len(present) or not joined.isascii() or width < 1:
        return sum(1 for v in present if _is_zero_date(v))
    if len(set(map(len, present))) != 1:
        return sum(1 for v in present if _is_zero_date(v))
    found = 0
    for offsets in ((0, 1, 2, 3), (5, 6), (8, 9)):
        if offsets[-1] >= width:
            continue
        hits = -1
        for k in offsets:
            hits &= int.from_bytes(joined[k::width].translate(_ZEROS), "little")
        found |= hits
    return found.bit_count()


def _non_null_zero_date(value: bytes | None) -> bool:
    return value is not None and _is_zero_date(value)


def _is_zero_date(value: Any) -> bool:
    """MySQL zero or partial-zero dates ('0000-00-00', '2020-00-15'), which views show as NULL."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else str(value)
    return text[:4] == "0000" or text[5:7] == "00" or text[8:10] == "00"
