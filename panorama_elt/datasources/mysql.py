"""MySQL/MariaDB datasource: streams tables with a server-side cursor, values as the server prints them."""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
from collections.abc import Sequence
from typing import Any

import pymysql
import pymysql.converters
import pymysql.cursors

from panorama_elt.datasources import mysql_wire
from panorama_elt.datasources.base import Datasource, Extraction
from panorama_elt.errors import SourceError
from panorama_elt.rows import BATCH_ROWS, Batches, PartitionKey, Shard
from panorama_elt.settings import (
    INTERVAL_UNITS,
    DatasourceSettings,
    MySQLSettings,
    TableSettings,
    is_identifier,
)

log = logging.getLogger("panorama_elt")

# A scan of a table this big (InnoDB's estimate of its data) with an integer primary key is
# split in two halves by key, read and written by two processes at once. Incremental scans
# too: their partition filter still leaves the rows spread over the whole key range, and which
# partitions changed says nothing cheap about how many rows that is.
SHARD_BYTES = 64 << 20
# Rows per batch on the public cursor path (the wire reader's batches are what a read brings).
CURSOR_BATCH_ROWS = BATCH_ROWS
_INTEGER_TYPES = {"tinyint", "smallint", "mediumint", "int", "bigint"}
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
_UNKNOWN_TIME_ZONE = 1298
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
    """The one scan that reads ``table`` (only ``partitions`` when given).

    Partition fields come first; rows come in the server's scan order (the writer sorts them
    into their partitions' files). No ORDER BY on purpose: sorting a table with TEXT columns
    makes the server fetch every row again by primary key, in random order, which on a table
    larger than the buffer pool costs several times the scan itself.
    """
    part_fields = table.partition_fields
    columns = [*part_fields, *(f.name for f in table.file_fields if not f.constant)]
    sql = f"SELECT {', '.join(quote_identifier(c) for c in columns)} FROM {quote_identifier(table.name)}"
    params: list[Any] = []
    if partitions is not None:
        where, params = partition_filter(part_fields, partitions)
        sql += f" WHERE {where}"
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
    # BIT values as numbers: bound back as bytes, the filter would compare them as strings.
    columns = ", ".join(
        f"{quote_identifier(c)} + 0" if table.field(c).type.kind == "bit" else quote_identifier(c)
        for c in parts.partition_fields
    )
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
        self._info: dict[str, tuple[int, str | None]] | None = None
        self._said_public_path = False

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
        tls = tls_arguments(s, where)
        try:
            connection = pymysql.connect(
                host=s.host,
                port=s.port,
                user=s.username,
                password=s.password or "",
                database=s.database,
                charset="utf8mb4",
                conv=_RAW_CONVERSIONS,
                connect_timeout=10,
                # A half-open connection or a lock that never comes must not hold the run
                # lock forever: every later hourly run would exit 3.
                read_timeout=1800,
                write_timeout=600,
                autocommit=True,
                **tls,
            )
            if s.time_zone:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SET time_zone = %s", [s.time_zone])
                except pymysql.err.MySQLError:
                    connection.close()
                    raise
            self._connection = connection
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            if code == _ACCESS_DENIED:
                # A user created REQUIRE SSL is refused the same way when TLS is off.
                no_tls = "; or the user requires TLS" if s.tls and not s.tls.required else ""
                raise SourceError(
                    f"{where}: access denied for user {s.username!r} (check mysql_username "
                    f"and mysql_password{no_tls})"
                ) from None
            if code == _NO_DATABASE_ACCESS:
                raise SourceError(
                    f"{where}: user {s.username!r} may not use database {s.database!r}, "
                    "or it does not exist (check mysql_database and the user's grants)"
                ) from None
            if code == _UNKNOWN_TIME_ZONE:
                raise SourceError(
                    f"{where}: mysql_time_zone: unknown time zone {s.time_zone!r} (named zones "
                    "need the server's time zone tables; an offset such as '+00:00' always works)"
                ) from None
            if code == _UNKNOWN_DATABASE:
                raise SourceError(
                    f"{where}: database {s.database!r} does not exist (check mysql_database)"
                ) from None
            raise SourceError(
                f"{where}: cannot connect ({_tls_failure(exc, s) or _reason(exc)})"
            ) from None
        except (pymysql.err.MySQLError, OSError) as exc:
            raise SourceError(f"{where}: cannot connect ({_reason(exc)})") from None
        except RuntimeError as exc:
            # PyMySQL without `cryptography` cannot answer MySQL 8's RSA password exchange.
            if "cryptography" not in str(exc):
                raise
            raise SourceError(
                f"{where}: cannot log in: {exc} (install the pinned requirements.txt: PyMySQL[rsa])"
            ) from None
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
        partitions = None
        if table.incremental and not force:
            sql, params = changed_partitions_sql(table, with_mark=mark is not None)
            if mark is not None:
                params.insert(0, mark)
            partitions = [tuple(row) for row in self._query_all(sql, params, table)]
            if not partitions:
                return Extraction(iter(()), full=False, mark=new_mark, as_bytes=True)
        sql, params = select_sql(table, partitions)
        split = self._split_point(table)
        shards: Sequence[Shard] = ()
        if split is None:
            batches = self._stream(table, sql, params)
        else:
            # Two halves by primary key, read at the same time (the other one in a process of
            # its own): the server scans in parallel, and the rows are parsed on two cores.
            column, middle = split
            where = " AND " if partitions is not None else " WHERE "
            low = f"{sql}{where}{quote_identifier(column)} <= %s"
            high = f"{sql}{where}{quote_identifier(column)} > %s"
            batches = self._stream(table, low, [*params, middle])
            shards = (functools.partial(read_shard, self.settings, table, high, [*params, middle]),)
        return Extraction(
            batches, full=partitions is None, mark=new_mark, as_bytes=True, shards=shards
        )

    def _split_point(self, table: TableSettings) -> tuple[str, int] | None:
        """The primary key column and its middle value, for a big table with an integer key."""
        size, column = self._table_info().get(table.name, (0, None))
        if size < SHARD_BYTES or column is None:
            return None
        key = quote_identifier(column)
        ((low, high),) = self._query_all(
            f"SELECT MIN({key}), MAX({key}) FROM {quote_identifier(table.name)}", [], table
        )
        if low is None or high is None or int(high) <= int(low):
            return None
        return column, (int(low) + int(high)) // 2

    def _table_info(self) -> dict[str, tuple[int, str | None]]:
        """Size (InnoDB's estimate) and single integer primary key of this datasource's tables.

        One query, the first time a table is read in full.
        """
        if self._info is None:
            names = [t.name for t in self.settings.tables]
            sql = (
                "SELECT t.TABLE_NAME, t.DATA_LENGTH, COUNT(s.COLUMN_NAME), MAX(s.COLUMN_NAME), "
                "MAX(c.DATA_TYPE) FROM information_schema.TABLES t "
                "LEFT JOIN information_schema.STATISTICS s ON s.TABLE_SCHEMA = t.TABLE_SCHEMA "
                "AND s.TABLE_NAME = t.TABLE_NAME AND s.INDEX_NAME = 'PRIMARY' "
                "LEFT JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA "
                "AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME "
                "WHERE t.TABLE_SCHEMA = DATABASE() "
                f"AND t.TABLE_NAME IN ({', '.join(['%s'] * len(names))}) "
                "GROUP BY t.TABLE_NAME, t.DATA_LENGTH"
            )
            self.connect()  # a server that cannot be reached fails the table, not this query
            self._info = {}
            try:
                rows = self._query_all(sql, names)
            except SourceError as exc:  # no split then, but the tables are still read
                log.warning(
                    "%s: no table sizes, no scans split in two: %s", self.settings.name, exc
                )
                rows = []
            for name, size, keys, column, ctype in rows:
                integer = int(keys) == 1 and _text(ctype).lower() in _INTEGER_TYPES
                self._info[_text(name)] = (int(size or 0), _text(column) if integer else None)
        return self._info

    def _stream(self, table: TableSettings, sql: str, params: list[Any]) -> Batches:
        """Batches of rows of one scan of the table: every value the bytes the server sent."""
        connection = self.connect()
        cursor = connection.cursor(pymysql.cursors.SSCursor)
        try:
            # Sends the query and reads the column definitions; the rows are still on the wire.
            cursor.execute(sql, params)
        except pymysql.err.MySQLError as exc:
            with contextlib.suppress(pymysql.err.MySQLError):
                cursor.close()
            raise self._table_error(table, exc) from None
        read = [f for f in table.file_fields if not f.constant]
        problem = mysql_wire.unsupported(cursor)
        if problem is None:
            dates = [i for i, f in enumerate(read) if f.type.kind in ("date", "datetime")]
            # Packed rows need text values, and every file column among them.
            pack = bool(read) and len(read) == len(table.file_fields)
            pack = pack and not any(f.type.kind in ("binary", "bit") for f in read)
            rows = mysql_wire.batches(cursor, len(table.partition_fields), dates, pack)
        else:
            if not self._said_public_path:  # once a run: the reason is the same for every table
                self._said_public_path = True
                log.info("reading MySQL rows through pymysql's public cursor API: %s", problem)
            rows = _cursor_batches(cursor)
        finished = False
        try:
            yield from rows
            finished = True
        except pymysql.err.MySQLError as exc:
            raise self._table_error(table, exc) from None
        except UnicodeDecodeError as exc:  # the public path decodes text columns
            raise SourceError(
                f"{table.name}: a row holds text that is not valid UTF-8 ({exc})"
            ) from None
        finally:
            if finished:
                cursor.close()
            else:
                # Stopped early (an error, a signal, a writer failure): the rest of the result
                # is still on its way, and reading it all could take long. Drop the connection;
                # the next table reconnects.
                if problem is None:
                    mysql_wire.abandon(cursor)
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
            # Aliased: MySQL 8 labels information_schema columns in upper case, MariaDB and
            # 5.7 as written; the aliases make the labels the same on every server.
            "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS column_name, "
            "COLUMN_TYPE AS column_type FROM information_schema.COLUMNS "
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


def tls_arguments(s: MySQLSettings, where: str) -> dict[str, Any]:
    """pymysql.connect arguments for the TLS settings (none: PyMySQL's preferred mode)."""
    if s.tls is None:
        return {}
    if not s.tls.required:
        return {"ssl_disabled": True}
    # Our own context: PyMySQL would verify nothing without a CA file, where mysql_ssl: true
    # means verified against the system's CAs.
    context = ssl.create_default_context(cafile=str(s.tls.ca) if s.tls.ca else None)
    # MySQL's auto-generated certificates fail Python 3.13's strict X.509 checks (PyMySQL
    # relaxes them the same way); the chain and the host name are still verified.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    context.check_hostname = s.tls.verify_identity
    context.verify_mode = ssl.CERT_REQUIRED if s.tls.verify_cert else ssl.CERT_NONE
    if s.tls.cert and s.tls.key:
        try:
            context.load_cert_chain(str(s.tls.cert), str(s.tls.key))
        except (ssl.SSLError, OSError) as exc:
            raise SourceError(
                f"{where}: cannot use mysql_ssl_cert/mysql_ssl_key "
                f"{s.tls.cert}, {s.tls.key}: {exc.strerror or exc}"
            ) from None
    return {"ssl": context}


def _tls_failure(exc: pymysql.err.OperationalError, s: MySQLSettings) -> str | None:
    """A TLS handshake failure in words, with the setting to check; None for other errors."""
    cause = getattr(exc, "original_exception", None) or exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        problem = (cause.verify_message or str(cause)).rstrip(".")
        if "mismatch" in problem.lower():
            return (
                f"TLS: the server's certificate does not name {s.host!r}: {problem} (set "
                "mysql_host to a name the certificate holds, or mysql_ssl_verify_identity: false)"
            )
        ca = (
            f"mysql_ssl_ca {s.tls.ca}"
            if s.tls and s.tls.ca
            else "the system's CAs (no mysql_ssl_ca)"
        )
        return f"TLS: the server's certificate is not trusted: {problem} (checked against {ca})"
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed: {cause.reason or cause}"
    if exc.args and exc.args[0] == pymysql.constants.CR.CR_SSL_CONNECTION_ERROR:
        return f"TLS: {exc.args[1]} (mysql_ssl or a mysql_ssl_* setting asks for TLS)"
    return None


def _reason(exc: BaseException) -> str:
    """The server's message without the error-number tuple decoration."""
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"{exc.args[1]} (MySQL error {exc.args[0]})"
    return str(exc) or type(exc).__name__


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_shard(
    settings: DatasourceSettings, table: TableSettings, sql: str, params: list[Any]
) -> Batches:
    """The batches of one shard of a scan, on a connection of its own (in a shard process)."""
    source = MySQLDatasource(settings)
    try:
        yield from source._stream(table, sql, params)
    finally:
        source.close()


def _cursor_batches(cursor: Any) -> Batches:
    """The rows of an SSCursor through pymysql's public API, as lists of bytes values: what the
    wire reader gives (pymysql decoded the text columns; they are encoded back to UTF-8)."""
    while True:
        rows = cursor.fetchmany(CURSOR_BATCH_ROWS)
        if not rows:
            return
        yield [[v.encode("utf-8") if isinstance(v, str) else v for v in row] for row in rows]
