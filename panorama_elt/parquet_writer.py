"""Writes a table's batches of rows (panorama_elt.rows) as one typed Parquet file per partition.

Rows are grouped into partitions exactly as for CSV: a ParquetWriter is a CsvWriter (the same
memory budget, the same reading processes and merge), and ``finish`` turns each partition's
plain CSV file, still in the private temp folder, into its Parquet file with DuckDB. Every
column is converted by the SQL that the local typed views apply to a raw CSV column
(views.column_sql), so a Parquet cell holds what the CSV typed view shows, by construction,
with the typed view's type (the DuckDB types of the views' CASTs; datalakes/aws.hive_type
gives their Glue names). Zero dates have no Parquet date or timestamp: they are NULL in the
file, and counted by the CSV writer as it encodes them.

Memory and speed: an extract-and-load converts in ``conversion_workers``, child processes
started once per run, one per CPU (at most MAX_PROCESSES), each given a share of a table's
partitions and converting in one DuckDB thread within a memory limit (MEMORY_BYTES, or more
for a partition of very long lines), in row groups of ROW_GROUP_BYTES: the conversion runs on
every CPU the run may use, no process holds more than one conversion's memory, and the
runner's own stays what the CSV path takes. Without workers (a writer used alone) it converts
in this process. Small partitions are converted together, up to GROUP_FILES files or
GROUP_BYTES of CSV in one statement that writes one file per partition (PARTITION_BY): a
statement per partition would cost more than converting most partitions does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from panorama_elt.datalakes.local import duckdb_reason
from panorama_elt.encoding import sql_string
from panorama_elt.errors import DatalakeError, PanoramaError, SourceError
from panorama_elt.rows import PartitionKey
from panorama_elt.settings import FieldSettings, TableSettings
from panorama_elt.shards import Job, Workers
from panorama_elt.views import column_sql, quote_name
from panorama_elt.writer import CsvWriter, PartitionFile, Partitions, WrittenFile

# zstd at DuckDB's default level: the size-b studentmodule files take 34.5 MB against snappy's
# 52.5 MB (a third fewer bytes for Athena to scan and S3 to keep) for 5-10% more conversion
# time (README, Performance). Athena, DuckDB, Spark and pyarrow all read it.
COMPRESSION = "zstd"
GROUP_BYTES = 8 << 20
GROUP_FILES = 100  # also DuckDB's partitioned_write_max_open_files (see _connection)
ROW_GROUP_BYTES = 4 << 20
MEMORY_BYTES = 64 << 20
MAX_PROCESSES = 4
# Line lengths DuckDB's CSV reader is given: at least this, and never below the longest block
# of lines the CSV writer appended to a file (see PartitionFile.longest).
_MIN_LINE_BYTES = 1 << 20
_FILE = "panorama_file"
_PART = "panorama_part"


class ParquetWriter(CsvWriter):
    """Writes the rows of one table into ``folder`` as Parquet files (see the module docstring).

    ``compression`` (gzip, for CSV files) does not apply: Parquet files are compressed inside.
    """

    def __init__(
        self,
        table: TableSettings,
        folder: Path,
        compression: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(table, folder, None, progress)

    def _append_partition(self, mine: PartitionFile, other: PartitionFile) -> None:
        """Another scan's file of the same partition is read where it is (see merge)."""
        mine.more += [other.path, *other.more]

    def finish(
        self, parts: Partitions, as_bytes: bool, workers: Workers | None = None
    ) -> list[tuple[PartitionKey, WrittenFile]]:
        """Convert every partition's CSV file to Parquet, then list them as CsvWriter does:
        in ``workers`` (shares of about the same bytes, one per worker), or here without."""
        groups = list(_groups(list(parts.values())))
        if workers is None:
            Conversion(self.table, groups, self.folder).run(threads=min(2, _cpus()))
        else:
            shares = _shares(groups, workers.count)
            jobs = [Conversion(self.table, share, self.folder) for share in shares]
            for share, paths in zip(shares, workers.run(jobs, self.table.name), strict=True):
                for part, path in zip(_parts(share), paths, strict=True):
                    part.path = path
        return super().finish(parts, as_bytes)


def conversion_workers() -> Workers:
    """The processes a run's Parquet tables are converted in: one per CPU, at most
    MAX_PROCESSES (enter them with ``with``)."""
    return Workers(min(_cpus(), MAX_PROCESSES), Conversion.doing, preload=[__name__])


class Conversion(Job):
    """Partitions' CSV files to Parquet, a group of partitions per DuckDB statement; each
    partition's ``path`` is then its Parquet file, and its CSV file is gone."""

    doing = "Parquet conversion"

    def __init__(self, table: TableSettings, groups: list[list[PartitionFile]], folder: Path):
        self.table = table
        self.groups = groups
        self.folder = folder
        fields = table.file_fields
        self.column_types = (
            "{" + ", ".join(f"{sql_string(f.name)}: 'VARCHAR'" for f in fields) + "}"
        )
        self.select = ", ".join(f"{_typed_sql(f)} AS {quote_name(f.name)}" for f in fields)

    def __call__(self, progress: Callable[[int], None]) -> list[Path]:
        """In a worker: the Parquet files, in the order of the groups' partitions."""
        self.run(threads=1)
        return [p.path for p in _parts(self.groups)]

    def clean_up(self, orphaned: bool) -> None:
        if orphaned:  # our files are in the dead parent's temp folder for the table
            shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, threads: int) -> None:
        longest = max((p.longest for p in _parts(self.groups)), default=0)
        line = max(_MIN_LINE_BYTES, longest + 1)
        con = _connection(threads, max(MEMORY_BYTES, 8 * line))
        for n, group in enumerate(self.groups):
            self._convert(con, group, line, self.folder / f"parquet-{os.getpid()}-{n}")

    def _convert(
        self, con: duckdb.DuckDBPyConnection, group: list[PartitionFile], line: int, folder: Path
    ) -> None:
        files = [str(f) for p in group for f in _files(p)]
        reader = (
            f"read_csv($files, columns={self.column_types}, header=true, delim=',', "
            "quote='\"', escape='\\', auto_detect=false, allow_quoted_nulls=false, "
            "hive_partitioning=false, "  # a temp path holding `/name=value/` adds no column
            f"strict_mode=true, max_line_size={line}, buffer_size={2 * line}, "
            f"filename={sql_string(_FILE)})"
        )
        options = (
            f"FORMAT parquet, COMPRESSION {COMPRESSION}, ROW_GROUP_SIZE_BYTES {ROW_GROUP_BYTES}"
        )
        targets = [p.path.with_suffix(".parquet") for p in group]
        if len(group) == 1:
            sql = f"COPY (SELECT {self.select} FROM {reader}) TO $target ({options})"
            self._run(con, sql, {"files": files, "target": str(targets[0])}, reader, files)
        else:
            # Each row's partition: the place in the group of the partition its file is of
            # ($parts, by file), a folder of DuckDB's each.
            parts = [index for index, p in enumerate(group) for _ in _files(p)]
            sql = (
                f"COPY (SELECT {self.select}, list_extract($parts, list_position($files, "
                f"{quote_name(_FILE)})) AS {_PART} FROM {reader}) "
                f"TO $target ({options}, PARTITION_BY ({_PART}))"
            )
            params = {"files": files, "parts": parts, "target": str(folder)}
            self._run(con, sql, params, reader, files)
            for index, target in enumerate(targets):
                found = list((folder / f"{_PART}={index}").glob("*.parquet"))
                if len(found) != 1:  # not expected for a group this small
                    raise DatalakeError(
                        f"{self.table.name}: DuckDB wrote {len(found)} Parquet files for one "
                        "partition (expected exactly one)"
                    )
                found[0].replace(target)
            shutil.rmtree(folder)
        for part, target in zip(group, targets, strict=True):
            for path in _files(part):
                path.unlink()
            part.path, part.more = target, []

    def _run(
        self,
        con: duckdb.DuckDBPyConnection,
        sql: str,
        params: dict[str, Any],
        reader: str,
        files: list[str],
    ) -> None:
        try:
            con.execute(sql, params)
        except (duckdb.ConversionException, duckdb.InvalidInputException) as exc:
            raise self._bad_value(con, reader, files, exc) from None
        except duckdb.Error as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: duckdb.Error) -> DatalakeError:
        return DatalakeError(
            f"{self.table.name}: writing Parquet files failed: DuckDB: {duckdb_reason(exc)}"
        )

    def _bad_value(
        self,
        con: duckdb.DuckDBPyConnection,
        reader: str,
        files: list[str],
        exc: duckdb.Error,
    ) -> PanoramaError:
        """The error naming the column whose text is not of its type (DuckDB names the
        value); if no column fails alone, DuckDB's own error."""
        for f in self.table.file_fields:
            try:
                con.execute(f"SELECT count({_typed_sql(f)}) FROM {reader}", {"files": files})
            except (duckdb.ConversionException, duckdb.InvalidInputException) as column_exc:
                return SourceError(
                    f"{self.table.name}: column {f.name} ({f.type.written}) holds a value that "
                    f"is not a {f.type.view_type} ({duckdb_reason(column_exc)})"
                )
            except duckdb.Error:
                break
        return self._failed(exc)


def _typed_sql(f: FieldSettings) -> str:
    """The typed view's SQL of a raw column; for text, only where it holds a backslash (the
    NULL token and every escape start with one: elsewhere the decoding changes nothing)."""
    sql = column_sql(f.name, f.type, "duckdb")
    if f.type.kind != "text":
        return sql
    column = quote_name(f.name)
    return f"CASE WHEN contains({column}, '\\') THEN {sql} ELSE {column} END"


def _files(part: PartitionFile) -> list[Path]:
    """The CSV files of a partition: its own, and other scans'."""
    return [part.path, *part.more]


def _size(part: PartitionFile) -> int:
    return sum(path.stat().st_size for path in _files(part))


def _parts(groups: list[list[PartitionFile]]) -> list[PartitionFile]:
    return [p for group in groups for p in group]


def _groups(parts: list[PartitionFile]) -> Iterator[list[PartitionFile]]:
    """Partitions to convert together: small ones up to the group bounds; a large one, or one
    without rows (a statement with PARTITION_BY writes no file for it), alone."""
    group: list[PartitionFile] = []
    size = 0
    for part_size, part in sorted(((_size(p), p) for p in parts), key=lambda t: t[0]):
        if part.rows == 0 or part_size >= GROUP_BYTES:
            yield [part]
            continue
        if group and (size + part_size > GROUP_BYTES or len(group) >= GROUP_FILES):
            yield group
            group, size = [], 0
        group.append(part)
        size += part_size
    if group:
        yield group


def _shares(groups: list[list[PartitionFile]], n: int) -> list[list[list[PartitionFile]]]:
    """``groups`` dealt into ``n`` shares of about the same bytes (largest first, each to the
    lightest share)."""
    shares: list[list[list[PartitionFile]]] = [[] for _ in range(n)]
    loads = [0] * n
    for size, group in sorted(((sum(_size(p) for p in g), g) for g in groups), key=lambda t: -t[0]):
        lightest = loads.index(min(loads))
        shares[lightest].append(group)
        loads[lightest] += size
    return [share for share in shares if share]


def _cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_shared: duckdb.DuckDBPyConnection | None = None


def _connection(threads: int, memory: int) -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB for conversions (connecting takes longer than converting
    a small table), set to ``threads`` and a ``memory`` limit. It never spills to disk: a
    conversion streams, and one that would not fit fails its table."""
    global _shared
    if _shared is None:
        _shared = duckdb.connect(
            ":memory:",
            config={
                "preserve_insertion_order": False,
                "temp_directory": "",
                # A statement writes one file per partition only while it may keep every
                # partition's file open: one per partition of a group.
                "partitioned_write_max_open_files": GROUP_FILES,
            },
        )
    _shared.execute(f"SET threads = {int(threads)}")
    _shared.execute(f"SET memory_limit = '{int(memory)}B'")
    return _shared
