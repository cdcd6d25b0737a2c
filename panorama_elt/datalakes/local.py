"""Local datalake: the bucket's tree on disk, and a DuckDB file with raw tables and typed views."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from panorama_elt.datalakes.base import Datalake, PartitionValues
from panorama_elt.encoding import sql_string
from panorama_elt.errors import DatalakeError, one_line
from panorama_elt.paths import base_values, format_of_file, other_suffix, partition_names
from panorama_elt.settings import DatalakeSettings, TableSettings
from panorama_elt.views import create_view_sql, quote_name, raw_columns

CATALOG_TABLE = "panorama_partitions"
_FILE_COLUMN = "panorama_file"
# The comment of a Parquet raw table that reads columns no file holds yet as NULL.
_NULL_COLUMNS_NOTE = "columns no file holds yet, read as NULL: "
# Files written before a column was added have fewer columns: null_padding reads them with
# NULL for the new column until they are rewritten.
_MAX_LINE_BYTES = 1 << 30
# DuckDB reserves a compressed file's whole read buffer up front (16 x max_line_size unless
# given: 16 GiB, an out-of-memory error on any query), so gzip files get a smaller line limit.
_MAX_GZIP_LINE_BYTES = 1 << 25


def read_csv_sql(files: list[str], columns: list[str]) -> str:
    """DuckDB read_csv over our encoded files: every column text, no NULL guessing."""
    file_list = "[" + ", ".join(sql_string(f) for f in files) + "]"
    column_map = "{" + ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in columns) + "}"
    sizes = f"max_line_size={_MAX_LINE_BYTES}"
    if any(f.endswith(".gz") for f in files):
        sizes = f"max_line_size={_MAX_GZIP_LINE_BYTES}, buffer_size={2 * _MAX_GZIP_LINE_BYTES}"
    return (
        f"read_csv({file_list}, columns={column_map}, header=true, delim=',', quote='\"', "
        "escape='\\', auto_detect=false, allow_quoted_nulls=false, strict_mode=true, hive_partitioning=false, null_padding=true, "
        f"{sizes}, filename={sql_string(_FILE_COLUMN)})"
    )


def duckdb_reason(exc: duckdb.Error) -> str:
    """DuckDB's message on one line, without the excerpt of the statement it appends."""
    return one_line(str(exc).split("\n\nLINE ", 1)[0])


@contextmanager
def duckdb_errors() -> Iterator[None]:
    """Turn DuckDB's errors into one-line DatalakeErrors."""
    try:
        yield
    except duckdb.Error as exc:
        raise DatalakeError(f"DuckDB: {duckdb_reason(exc)}") from None


def read_parquet_sql(files: list[str]) -> str:
    """DuckDB read_parquet over our typed files; columns matched by name, so files written
    before a column was added read it as NULL."""
    file_list = "[" + ", ".join(sql_string(f) for f in files) + "]"
    return (
        f"read_parquet({file_list}, union_by_name=true, hive_partitioning=false, "
        f"filename={sql_string(_FILE_COLUMN)})"
    )


class LocalDatalake(Datalake):
    """Files under ``path``; catalog, raw tables (views over the files) and typed views in DuckDB."""

    dialect = "duckdb"

    def __init__(self, settings: DatalakeSettings) -> None:
        super().__init__(settings)
        assert settings.path is not None
        self.root = settings.path
        self.database_file = settings.database_file or self.root / f"{settings.database}.duckdb"
        self._db: duckdb.DuckDBPyConnection | None = None

    @property
    def db(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, opened on first use, with the partition catalog in place."""
        if self._db is None:
            try:
                self.database_file.parent.mkdir(parents=True, exist_ok=True)
                self._db = duckdb.connect(str(self.database_file))
            except (duckdb.Error, OSError) as exc:
                raise DatalakeError(
                    f"cannot open the local datalake database {self.database_file}: {one_line(exc)}"
                ) from None
            try:
                self._execute(
                    f"CREATE TABLE IF NOT EXISTS {CATALOG_TABLE} "
                    "(raw_table VARCHAR NOT NULL, file VARCHAR PRIMARY KEY, vals VARCHAR[] NOT NULL)"
                )
            except DatalakeError:
                self.close()
                raise
        return self._db

    # Every DuckDB call goes through these three, so its errors reach the runner as
    # DatalakeErrors and fail one table, not the run.

    def _execute(self, sql: str, params: list[Any] | None = None) -> None:
        """Run one statement."""
        with duckdb_errors():
            self.db.execute(sql, params or [])

    def _query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of one query."""
        with duckdb_errors():
            return self.db.execute(sql, params or []).fetchall()

    def _executemany(self, sql: str, rows: list[list[Any]]) -> None:
        """Run one statement per row."""
        with duckdb_errors():
            self.db.executemany(sql, rows)

    def test_connection(self) -> list[tuple[str, bool, str]]:
        checks = []
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".panorama-probe-{uuid.uuid4().hex}"
            probe.write_text("ok")
            probe.unlink()
            checks.append(("files", True, f"{self.root} is writable"))
        except OSError as exc:
            checks.append(("files", False, f"{self.root}: {exc.strerror or exc}"))
        try:
            version = self._query("SELECT version()")[0][0]
            checks.append(("catalog", True, f"DuckDB {version} at {self.database_file}"))
        except DatalakeError as exc:
            checks.append(("catalog", False, str(exc)))
        return checks

    def path_of(self, key: str) -> Path:
        """Where an object key lives on disk."""
        return self.root / key

    def upload(self, local_file: Path, key: str) -> None:
        dest = self.path_of(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Move next to the destination under a hidden name, then rename: readers only ever
        # see the old complete file or the new complete file.
        part = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
        try:
            shutil.move(local_file, part)
            os.replace(part, dest)
        finally:
            if part.exists():
                part.unlink()

    def create_table(self, table: TableSettings) -> None:
        # Partitions registered under another layout (the partition fields or the file format
        # changed) cannot be read with the new one: unregister them and delete their files.
        # Only this installation's: while other installations still have partitions in the old
        # layout, the change is refused (the table cannot serve both layouts).
        levels = len(partition_names(table, self.settings))
        base = list(base_values(self.settings))
        old = [
            (file, vals)
            for file, vals in self._query(
                f"SELECT file, vals FROM {CATALOG_TABLE} WHERE raw_table = ?",
                [table.datalake_table_name],
            )
            if len(vals) != levels or format_of_file(file) != self.settings.file_format
        ]
        others = sorted({"/".join(v[: len(base)]) for _, v in old if list(v[: len(base)]) != base})
        if others:
            raise DatalakeError(
                f"{table.name}: the partition fields or the file format changed, but other "
                f"installations ({', '.join(others[:3])}) still have partitions in the old "
                "layout; every installation must reload: drop-datalake-tables, then "
                "create-datalake-tables and extract-and-load --force from each"
            )
        if old:
            self._executemany(
                f"DELETE FROM {CATALOG_TABLE} WHERE file = ?", [[file] for file, _ in old]
            )
            for file, _ in old:
                Path(file).unlink(missing_ok=True)
        self._refresh_raw(table)

    def drop_table(self, table: TableSettings) -> None:
        self._execute(f"DROP VIEW IF EXISTS {quote_name(table.datalake_table_view)}")
        self._execute(f"DROP VIEW IF EXISTS {quote_name(table.datalake_table_name)}")
        self._execute(
            f"DELETE FROM {CATALOG_TABLE} WHERE raw_table = ?", [table.datalake_table_name]
        )

    def create_view(self, table: TableSettings) -> None:
        if not self._exists(table.datalake_table_name):
            raise DatalakeError(
                f"{table.name}: raw table {table.datalake_table_name} does not exist; run create-datalake-tables first"
            )
        self._execute(create_view_sql(table, self.settings, self.dialect))

    def create_sql_view(self, name: str, athena_select: str, source: str) -> None:
        from panorama_elt.analytics import to_duckdb

        select = to_duckdb(athena_select, source)
        try:
            self.db.execute(f"CREATE OR REPLACE VIEW {quote_name(name)} AS {select}")
        except duckdb.Error as exc:
            raise DatalakeError(f"{source}: DuckDB: {_one_line(exc)}") from None

    def drop_sql_view(self, name: str) -> None:
        self._execute(f"DROP VIEW IF EXISTS {quote_name(name)}")

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` (DuckDB SQL) on a read-only connection of its own."""
        if not self.database_file.exists():
            raise DatalakeError(
                f"no local datalake database at {self.database_file}: run create-datalake-tables first"
            )
        try:
            with duckdb.connect(str(self.database_file), read_only=True) as db:
                result = db.execute(sql)
                if result.description is None:
                    return [], []
                return [d[0] for d in result.description], result.fetchall()
        except duckdb.Error as exc:
            raise DatalakeError(f"query: DuckDB: {_one_line(exc)}") from None

    def partitions(self, table: TableSettings) -> set[PartitionValues]:
        rows = self._query(
            f"SELECT vals, file FROM {CATALOG_TABLE} WHERE raw_table = ?",
            [table.datalake_table_name],
        )
        # A partition registered with the other file suffix (compression was switched) counts
        # as not registered, so the next run that writes it registers the new file.
        levels = len(partition_names(table, self.settings))
        return {
            tuple(vals)
            for vals, file in rows
            if len(vals) != levels or file == str(self.path_of(self.key(table, tuple(vals))))
        }

    def file_formats(self, table: TableSettings) -> set[str]:
        rows = self._query(
            f"SELECT file FROM {CATALOG_TABLE} WHERE raw_table = ?", [table.datalake_table_name]
        )
        return {format_of_file(file) for (file,) in rows}

    def add_partitions(self, table: TableSettings, partitions: Iterable[PartitionValues]) -> None:
        rows = [
            [table.datalake_table_name, str(self.path_of(self.key(table, p))), list(p)]
            for p in partitions
        ]
        if not rows:
            if self._reads_as_null(table):
                # Rewritten files may now hold a column the raw table reads as NULL.
                self._refresh_raw(table)
            return
        self._execute("BEGIN TRANSACTION")
        try:
            # One row per partition: a new file (another suffix) replaces the old registration.
            self._executemany(
                f"DELETE FROM {CATALOG_TABLE} WHERE raw_table = ? AND vals = ?",
                [[r[0], r[2]] for r in rows],
            )
            self._executemany(f"INSERT OR REPLACE INTO {CATALOG_TABLE} VALUES (?, ?, ?)", rows)
            self._refresh_raw(table)
            self._execute("COMMIT")
        except BaseException:
            self._execute("ROLLBACK")
            raise
        for row in rows:
            Path(other_suffix(str(row[1]))).unlink(missing_ok=True)

    def remove_partitions(
        self, table: TableSettings, partitions: Iterable[PartitionValues]
    ) -> None:
        files = [self.path_of(self.key(table, p)) for p in partitions]
        if not files:
            return
        self._execute("BEGIN TRANSACTION")
        try:
            self._executemany(
                f"DELETE FROM {CATALOG_TABLE} WHERE file = ?", [[str(f)] for f in files]
            )
            self._refresh_raw(table)
            self._execute("COMMIT")
        except BaseException:
            self._execute("ROLLBACK")
            raise
        # Unregistered first, deleted second: a crash in between leaves only unread files.
        for f in files:
            f.unlink(missing_ok=True)
            _remove_empty_parents(f.parent, self.root)

    def read_state(self, key: str) -> str | None:
        try:
            return self.path_of(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_state(self, key: str, text: str) -> None:
        dest = self.path_of(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
        part.write_text(text, encoding="utf-8")
        os.replace(part, dest)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _exists(self, name: str) -> bool:
        ((count,),) = self._query(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND NOT internal", [name]
        )
        return bool(count)

    def _refresh_raw(self, table: TableSettings) -> None:
        """(Re)define the raw table as a view over exactly the registered files."""
        columns = raw_columns(table, self.settings)
        file_columns = [f.name for f in table.file_fields]
        part_columns = columns[len(file_columns) :]
        files = [
            r[0]
            for r in self._query(
                f"SELECT file FROM {CATALOG_TABLE} WHERE raw_table = ? ORDER BY file",
                [table.datalake_table_name],
            )
        ]
        name = quote_name(table.datalake_table_name)
        missing: list[str] = []
        if not files:
            select = ", ".join(f"CAST(NULL AS VARCHAR) AS {quote_name(c)}" for c in columns)
            sql = f"CREATE OR REPLACE VIEW {name} AS SELECT {select} WHERE false"
        else:
            picks = [f"r.{quote_name(c)}" for c in file_columns]
            if self.settings.file_format == "parquet":
                reader = read_parquet_sql(files)
                # A column the settings gained after every file was written (set-tables-fields)
                # is in none of them: NULL of its type until files that hold it are registered.
                # (DuckDB matches names whatever their case; the schema's root is no column.)
                held = {
                    column.lower()
                    for (column,) in self._query(
                        "SELECT name FROM parquet_schema(?) WHERE num_children IS NULL", [files]
                    )
                }
                missing = [f.name for f in table.file_fields if f.name.lower() not in held]
                picks = [
                    f"CAST(NULL AS {f.type.view_type}) AS {quote_name(f.name)}"
                    if f.name in missing
                    else pick
                    for pick, f in zip(picks, table.file_fields, strict=True)
                ]
            else:
                reader = read_csv_sql(files, file_columns)
            picks += [f"p.vals[{i + 1}] AS {quote_name(c)}" for i, c in enumerate(part_columns)]
            sql = (
                f"CREATE OR REPLACE VIEW {name} AS SELECT {', '.join(picks)} "
                f"FROM {reader} r "
                f"JOIN {CATALOG_TABLE} p ON p.file = r.{quote_name(_FILE_COLUMN)}"
            )
        self._execute(sql)
        if missing:
            # What _reads_as_null looks for (a replaced view loses its comment).
            note = _NULL_COLUMNS_NOTE + ", ".join(missing)
            self._execute(f"COMMENT ON VIEW {name} IS {sql_string(note)}")

    def _reads_as_null(self, table: TableSettings) -> bool:
        """Whether the raw table reads a column as NULL that no registered file held when it
        was defined (see _refresh_raw)."""
        rows = self._query(
            "SELECT comment FROM duckdb_views() WHERE view_name = ? AND NOT internal",
            [table.datalake_table_name],
        )
        return any(comment and comment.startswith(_NULL_COLUMNS_NOTE) for (comment,) in rows)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _remove_empty_parents(folder: Path, root: Path) -> None:
    """Remove now-empty partition folders up to (not including) the datalake root."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
