"""MySQL/MariaDB datasource: streams tables with a server-side cursor, values as the server prints them."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import pymysql
import pymysql.converters
import pymysql.cursors

from panorama_elt.datasources.base import Datasource, Extraction, PartitionKey, Rows
from panorama_elt.errors import SourceError
from panorama_elt.settings import INTERVAL_UNITS, MySQLSettings, TableSettings, is_identifier

FETCH_ROWS = 5000
# Rows modified a little before the last mark may commit after it was taken (long
# transactions): look back this much further than the mark.
SAFETY_MARGIN_MINUTES = 10

# Encoders only, no decoders: every value arrives as the text the server sent (or bytes for
# binary columns), so DECIMAL, BIGINT UNSIGNED, microseconds and zero dates stay exact.
_RAW_CONVERSIONS: dict[Any, Any] = {
    k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)
}

# Server error numbers worth a sentence of their own.
_NO_DATABASE_ACCESS = 1044
_ACCESS_DENIED = 1045
_UNKNOWN_DATABASE = 1049
_NO_SUCH_TABLE = 1146
_BAD_FIELD = 1054


def quote_identifier(name: str) -> str:
    """Back-quote a validated identifier."""
    if not is_identifier(name):
        raise SourceError(f"{name!r} is not a plain identifier")
    return f"`{name}`"


def select_sql(
    table: TableSettings, partitions: Sequence[PartitionKey] | None
) -> tuple[str, list[Any]]:
    """The one ordered scan that reads ``table`` (only ``partitions`` when given).

    Partition fields come first so rows can be grouped as they stream; text partition
    fields are ordered by their bytes, because a case- or accent-insensitive collation
    would interleave 'ABC' and 'abc', which are different partitions.
    """
    part_fields = table.partition_fields
    kinds = {f.name: f.type.kind for f in table.fields}
    columns = [*part_fields, *(f.name for f in table.file_fields if not f.constant)]
    sql = f"SELECT {', '.join(quote_identifier(c) for c in columns)} FROM {quote_identifier(table.name)}"
    params: list[Any] = []
    if partitions is not None:
        where, params = partition_filter(part_fields, partitions)
        sql += f" WHERE {where}"
    if part_fields:
        order = [
            f"BINARY {quote_identifier(c)}" if kinds[c] in ("text", "time") else quote_identifier(c)
            for c in part_fields
        ]
        sql += f" ORDER BY {', '.join(order)}"
    return sql, params


def partition_filter(
    fields: Sequence[str], partitions: Sequence[PartitionKey]
) -> tuple[str, list[Any]]:
    """A WHERE condition matching rows of the given partitions, values bound."""
    if not partitions:
        return "FALSE", []
    if len(fields) == 1:
        column = quote_identifier(fields[0])
        values = [p[0] for p in partitions if p[0] is not None]
        parts = []
        if values:
            parts.append(f"{column} IN ({', '.join(['%s'] * len(values))})")
        if len(values) < len(partitions):
            parts.append(f"{column} IS NULL")
        return "(" + " OR ".join(parts) + ")", values
    # Several fields: NULL-safe equality on each, one group per partition.
    one = "(" + " AND ".join(f"{quote_identifier(f)} <=> %s" for f in fields) + ")"
    return "(" + " OR ".join([one] * len(partitions)) + ")", [v for p in partitions for v in p]


def changed_partitions_sql(table: TableSettings, with_mark: bool) -> tuple[str, list[Any]]:
    """SELECT DISTINCT partitions with rows changed in the window, and the window's bound params."""
    parts = table.partitions
    assert parts and parts.interval and parts.timestamp_field
    if parts.interval.unit not in INTERVAL_UNITS:
        raise SourceError(f"{table.name}: bad interval unit {parts.interval.unit!r}")
    window = f"NOW(6) - INTERVAL %s {parts.interval.unit}"
    params: list[Any] = [parts.interval.amount]
    if with_mark:
        window = (
            f"LEAST(CAST(%s AS DATETIME(6)) - INTERVAL {SAFETY_MARGIN_MINUTES} MINUTE, {window})"
        )
    columns = ", ".join(quote_identifier(c) for c in parts.partition_fields)
    sql = (
        f"SELECT DISTINCT {columns} FROM {quote_identifier(table.name)} "
        f"WHERE {quote_identifier(parts.timestamp_field)} >= {window}"
    )
    return sql, params


class MySQLDatasource(Datasource):
    """Tables of one MySQL or MariaDB database."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._connection: pymysql.connections.Connection | None = None

    @property
    def mysql(self) -> MySQLSettings:
        """The connection settings (validated to be present for this type)."""
        assert self.settings.mysql is not None
        return self.settings.mysql

    def connect(self) -> pymysql.connections.Connection:
        """Open (once) the connection, with errors that name the datasource and host."""
        if self._connection is not None:
            return self._connection
        s = self.mysql
        where = f"datasource {self.settings.name} (mysql://{s.host}:{s.port}/{s.database or ''})"
        if not s.username:
            raise SourceError(f"{where}: mysql_username is not set")
        if not s.database:
            raise SourceError(f"{where}: mysql_database is not set")
        try:
            self._connection = pymysql.connect(
                host=s.host,
                port=s.port,
                user=s.username,
                password=s.password or "",
                database=s.database,
                charset="utf8mb4",
                conv=_RAW_CONVERSIONS,
                connect_timeout=10,
                autocommit=True,
            )
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            if code == _ACCESS_DENIED:
                raise SourceError(
                    f"{where}: access denied for user {s.username!r} (check mysql_username and mysql_password)"
                ) from None
            if code == _NO_DATABASE_ACCESS:
                raise SourceError(
                    f"{where}: user {s.username!r} may not use database {s.database!r}, "
                    "or it does not exist (check mysql_database and the user's grants)"
                ) from None
            if code == _UNKNOWN_DATABASE:
                raise SourceError(
                    f"{where}: database {s.database!r} does not exist (check mysql_database)"
                ) from None
            raise SourceError(f"{where}: cannot connect ({_reason(exc)})") from None
        except (pymysql.err.MySQLError, OSError) as exc:
            raise SourceError(f"{where}: cannot connect ({_reason(exc)})") from None
        return self._connection

    def test_connection(self) -> str:
        version = self._query_one("SELECT VERSION()", [])
        s = self.mysql
        return f"MySQL {version} at {s.host}:{s.port}, database {s.database}"

    def now(self) -> str:
        """The database's own clock, with microseconds."""
        return str(self._query_one("SELECT NOW(6)", []))

    def extract(self, table: TableSettings, *, force: bool, mark: str | None) -> Extraction:
        new_mark = self.now() if table.incremental else None
        if table.incremental and not force:
            sql, params = changed_partitions_sql(table, with_mark=mark is not None)
            if mark is not None:
                params.insert(0, mark)
            changed = [tuple(row) for row in self._query_all(sql, params, table)]
            groups = self._groups(table, changed) if changed else iter(())
            return Extraction(groups, full=False, mark=new_mark)
        return Extraction(self._groups(table, None), full=True, mark=new_mark)

    def _groups(
        self, table: TableSettings, partitions: list[PartitionKey] | None
    ) -> Iterator[tuple[PartitionKey, Rows]]:
        sql, params = select_sql(table, partitions)
        width = len(table.partition_fields)
        rows = self._stream(sql, params, table)
        if width == 0:
            yield (), rows
            return
        seen: set[PartitionKey] = set()
        for key, group in itertools.groupby(rows, key=lambda r: tuple(r[:width])):
            if key in seen:
                raise SourceError(f"{table.name}: rows of partition {key!r} arrived out of order")
            seen.add(key)
            yield key, (row[width:] for row in group)

    def _stream(self, sql: str, params: list[Any], table: TableSettings) -> Iterator[Sequence[Any]]:
        connection = self.connect()
        cursor = connection.cursor(pymysql.cursors.SSCursor)
        try:
            try:
                cursor.execute(sql, params)
            except pymysql.err.MySQLError as exc:
                raise self._table_error(table, exc) from None
            while True:
                try:
                    batch = cursor.fetchmany(FETCH_ROWS)
                except pymysql.err.MySQLError as exc:
                    raise self._table_error(table, exc) from None
                if not batch:
                    break
                yield from batch
        finally:
            try:
                cursor.close()
            except pymysql.err.MySQLError:
                # The connection died mid-stream: drop it so the next table reconnects.
                self._discard()

    def query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """All rows of a small query (values as the server's text), errors as SourceError."""
        return self._query_all(sql, params)

    def _query_all(
        self, sql: str, params: list[Any], table: TableSettings | None = None
    ) -> list[tuple[Any, ...]]:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        except pymysql.err.MySQLError as exc:
            self._discard_if_dead(exc)
            if table is not None:
                raise self._table_error(table, exc) from None
            raise SourceError(f"datasource {self.settings.name}: {_reason(exc)}") from None

    def _query_one(self, sql: str, params: list[Any]) -> Any:
        rows = self._query_all(sql, params)
        return rows[0][0] if rows else None

    def describe(self, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        sql = (
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({', '.join(['%s'] * len(tables))}) "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION"
        )
        found: dict[str, list[tuple[str, str]]] = {}
        for name, column, ctype in self._query_all(sql, list(tables)):
            found.setdefault(_text(name), []).append((_text(column), _text(ctype).lower()))
        return found

    def _table_error(self, table: TableSettings, exc: pymysql.err.MySQLError) -> SourceError:
        self._discard_if_dead(exc)
        code = exc.args[0] if exc.args else None
        if code == _NO_SUCH_TABLE:
            return SourceError(
                f"{table.name}: table does not exist in database {self.mysql.database!r}"
            )
        if code == _BAD_FIELD:
            return SourceError(
                f"{table.name}: {_reason(exc)} (the settings list a column the table does not have; run set-tables-fields)"
            )
        return SourceError(f"{table.name}: {_reason(exc)}")

    def _discard_if_dead(self, exc: BaseException) -> None:
        if isinstance(exc, (pymysql.err.OperationalError, pymysql.err.InterfaceError)):
            self._discard()

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # the connection is already broken
                connection.close()

    def close(self) -> None:
        self._discard()


def _reason(exc: BaseException) -> str:
    """The server's message without the error-number tuple decoration."""
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"{exc.args[1]} (MySQL error {exc.args[0]})"
    return str(exc) or type(exc).__name__


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
