"""Settings blocks of the datasource plugins: typed connection settings, their keys and checks.

Imports no driver: the registry in ``datasources/__init__.py`` declares these blocks, and
settings validation reads them without loading pymysql or pymongo.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panorama_elt.plugins import SettingsBlock, TablesContext
from panorama_elt.settings_check import Checker, join, key_set, kind_of

_TIME_ZONE = re.compile(r"^(SYSTEM|[+-]\d{1,2}:\d{2}|[A-Za-z][A-Za-z0-9_+/-]*)$")


@dataclass(frozen=True)
class MySQLSettings:
    """How to reach a MySQL/MariaDB server."""

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    database: str | None
    path: str = ""
    time_zone: str | None = None
    tls: MySQLTLS | None = None


@dataclass(frozen=True)
class MySQLTLS:
    """TLS to MySQL, once settled: ``required`` False = no TLS at all (``mysql_ssl: false``).

    Without any mysql_ssl* key a datasource has no MySQLTLS: PyMySQL's default then applies
    (TLS when the server offers it, nothing verified).
    """

    required: bool
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    verify_cert: bool = False
    verify_identity: bool = False


@dataclass(frozen=True)
class MongoSettings:
    """How to reach the Open edX MongoDB."""

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    database: str
    auth_source: str | None
    replica_set: str | None
    tls: bool
    uri: str | None = field(repr=False)
    timeout_seconds: float
    path: str = ""
    tls_ca_file: Path | None = None
    tls_allow_invalid_hostnames: bool = False


MYSQL_KEYS = (
    "mysql_host",
    "mysql_port",
    "mysql_username",
    "mysql_password",
    "mysql_database",
    "mysql_time_zone",
    "mysql_ssl",
    "mysql_ssl_ca",
    "mysql_ssl_cert",
    "mysql_ssl_key",
    "mysql_ssl_verify_cert",
    "mysql_ssl_verify_identity",
)
MONGODB_KEYS = (
    "mongodb_host",
    "mongodb_port",
    "mongodb_username",
    "mongodb_password",
    "mongodb_database",
    "mongodb_auth_source",
    "mongodb_replica_set",
    "mongodb_tls",
    "mongodb_tls_ca_file",
    "mongodb_tls_allow_invalid_hostnames",
    "mongodb_uri",
    "mongodb_timeout_seconds",
)


def parse_mysql(check: Checker, d: Mapping[str, Any], path: str) -> MySQLSettings:
    """The MySQL connection of a datasource."""
    return MySQLSettings(
        host=check.text(d, "mysql_host", path) or "localhost",
        port=check.integer(d, "mysql_port", path, 3306, 1, 65535),
        username=check.text(d, "mysql_username", path),
        password=check.text(d, "mysql_password", path),
        database=check.identifier(d, "mysql_database", path),
        path=path,
        time_zone=_time_zone(check, d, path),
        tls=_mysql_tls(check, d, path),
    )


def parse_optional_mysql(check: Checker, d: Mapping[str, Any], path: str) -> MySQLSettings | None:
    """A MySQL connection only when one is configured (a host or a user is set)."""
    if not any(key_set(d, k) for k in ("mysql_host", "mysql_username")):
        return None
    return parse_mysql(check, d, path)


def parse_mongodb(check: Checker, d: Mapping[str, Any], path: str) -> MongoSettings:
    """The MongoDB connection of a datasource."""
    ca_file = _file(check, d, "mongodb_tls_ca_file", path)
    if ca_file is not None and check.optional_boolean(d, "mongodb_tls", path) is False:
        check.fail(join(path, "mongodb_tls"), "is false but mongodb_tls_ca_file is set")
    return MongoSettings(
        host=check.text(d, "mongodb_host", path) or "localhost",
        port=check.integer(d, "mongodb_port", path, 27017, 1, 65535),
        username=check.text(d, "mongodb_username", path),
        password=check.text(d, "mongodb_password", path),
        database=check.text(d, "mongodb_database", path) or "edxapp",
        auth_source=check.text(d, "mongodb_auth_source", path),
        replica_set=check.text(d, "mongodb_replica_set", path),
        # A CA file means TLS: it would be pointless without.
        tls=check.boolean(d, "mongodb_tls", path, ca_file is not None),
        uri=check.text(d, "mongodb_uri", path),
        timeout_seconds=float(check.integer(d, "mongodb_timeout_seconds", path, 10, 1, 3600)),
        path=path,
        tls_ca_file=ca_file,
        tls_allow_invalid_hostnames=check.boolean(
            d, "mongodb_tls_allow_invalid_hostnames", path, False
        ),
    )


def _mysql_tls(check: Checker, d: Mapping[str, Any], path: str) -> MySQLTLS | None:
    """The settled TLS choice: defaults verify what can be verified (see the README)."""
    ssl = check.optional_boolean(d, "mysql_ssl", path)
    files = {k: _file(check, d, f"mysql_ssl_{k}", path) for k in ("ca", "cert", "key")}
    verify_cert = check.optional_boolean(d, "mysql_ssl_verify_cert", path)
    verify_identity = check.optional_boolean(d, "mysql_ssl_verify_identity", path)
    others = [k for k in MYSQL_KEYS if k.startswith("mysql_ssl_") and key_set(d, k)]
    if ssl is False:
        if others:
            check.fail(join(path, "mysql_ssl"), f"is false (no TLS) but {', '.join(others)} set")
        return MySQLTLS(required=False)
    if ssl is None and not others:
        return None
    if (files["cert"] is None) != (files["key"] is None):
        check.fail(
            join(path, "mysql_ssl_cert" if files["cert"] is None else "mysql_ssl_key"),
            "is required with mysql_ssl_key and mysql_ssl_cert (a client certificate needs both)",
        )
    # mysql_ssl: true without a CA file verifies against the system's CAs (as RDS documents).
    verify_cert = verify_cert if verify_cert is not None else (bool(ssl) or files["ca"] is not None)
    verify_identity = verify_identity if verify_identity is not None else verify_cert
    if verify_identity and not verify_cert:
        check.fail(
            join(path, "mysql_ssl_verify_identity"),
            "needs mysql_ssl_verify_cert: a host name is checked on a verified certificate",
        )
    return MySQLTLS(True, files["ca"], files["cert"], files["key"], verify_cert, verify_identity)


def _file(check: Checker, d: Mapping[str, Any], key: str, path: str) -> Path | None:
    """A file path setting (relative to the settings file) that must exist."""
    file = check.local_path(check.text(d, key, path))
    if file is not None and not file.is_file():
        check.fail(join(path, key), f"file {file} not found")
    return file


def _time_zone(check: Checker, d: Mapping[str, Any], path: str) -> str | None:
    value = check.text(d, "mysql_time_zone", path)
    if value is not None and not _TIME_ZONE.match(value):
        check.fail(
            join(path, "mysql_time_zone"),
            f"{value!r} is not a time zone (use an offset such as '+00:00', SYSTEM, or a name)",
        )
        return None
    return value


MYSQL = SettingsBlock(MYSQL_KEYS, parse_mysql)
OPTIONAL_MYSQL = SettingsBlock(MYSQL_KEYS, parse_optional_mysql)
MONGODB = SettingsBlock(MONGODB_KEYS, parse_mongodb)


# --- File datasources (csv, xls) ------------------------------------------------------------


@dataclass(frozen=True)
class CsvSettings:
    """One CSV file (type ``csv``): where it is and how it is written."""

    location: Path
    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"
    header: bool = True
    null_value: str | None = None


@dataclass(frozen=True)
class XlsSettings:
    """One xlsx workbook (type ``xls``); ``sheets`` maps table names to sheet names."""

    location: Path
    sheets: tuple[tuple[str, str], ...] = ()

    def sheet(self, table: str) -> str:
        """The sheet a table reads (its ``sheet`` key, else the table name)."""
        return dict(self.sheets).get(table, table)


CSV_KEYS = ("location", "delimiter", "quotechar", "encoding", "header", "null_value")
XLS_KEYS = ("location",)


def parse_csv(check: Checker, d: Mapping[str, Any], path: str) -> CsvSettings | None:
    """The file of a csv datasource and its dialect."""
    location = check.local_path(check.text(d, "location", path, required=True))
    single = {}
    for key, default in (("delimiter", ","), ("quotechar", '"')):
        value = d.get(key, default)
        if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
            check.fail(join(path, key), f"must be one character, got {kind_of(value)}")
            value = default
        single[key] = value
    if single["delimiter"] == single["quotechar"]:
        check.fail(join(path, "quotechar"), "must differ from the delimiter")
    encoding = check.text(d, "encoding", path) or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        check.fail(join(path, "encoding"), f"unknown encoding {encoding!r}")
        encoding = "utf-8"
    null_value = d.get("null_value")
    if null_value is not None and not isinstance(null_value, str):
        check.fail(join(path, "null_value"), f"must be text, got {kind_of(null_value)}")
        null_value = None
    if location is None:
        return None
    return CsvSettings(
        location=location,
        delimiter=single["delimiter"],
        quotechar=single["quotechar"],
        encoding=encoding,
        header=check.boolean(d, "header", path, True),
        null_value=null_value,
    )


def parse_xls(check: Checker, d: Mapping[str, Any], path: str) -> XlsSettings | None:
    """The workbook of an xls datasource, and the sheet each table reads (its ``sheet`` key)."""
    location = check.local_path(check.text(d, "location", path, required=True))
    sheets = {}
    tables = d.get("tables")
    for i, entry in enumerate(tables if isinstance(tables, list) else []):
        if isinstance(entry, dict) and "sheet" in entry:
            sheet = check.text(entry, "sheet", f"{path}.tables[{i}]", required=True)
            if sheet is not None and isinstance(entry.get("name"), str):
                sheets[entry["name"]] = sheet
    return None if location is None else XlsSettings(location, tuple(sheets.items()))


def csv_tables(
    check: Checker, data: Any, path: str, blocks: tuple[Any, ...], context: TablesContext
) -> Any:
    """A csv datasource is one file, so one table; the original's example writes it as a mapping."""
    tables = context.common([data] if isinstance(data, dict) else data, path)
    if len(tables) > 1:
        check.fail(path, "a csv datasource is one file: give it one table")
    return _read_whole(check, tables)


def xls_tables(
    check: Checker, data: Any, path: str, blocks: tuple[Any, ...], context: TablesContext
) -> Any:
    """An xls datasource's tables, each with an optional ``sheet`` key (read by parse_xls)."""
    if isinstance(data, list):
        data = [
            {k: v for k, v in entry.items() if k != "sheet"} if isinstance(entry, dict) else entry
            for entry in data
        ]
    return _read_whole(check, context.common(data, path))


def _read_whole(check: Checker, tables: Any) -> Any:
    for table in tables:
        if table.incremental:
            check.fail(
                join(table.path, "partitions.interval"),
                "file datasources are read whole each run (no incremental updates)",
            )
    return tables


CSV = SettingsBlock(CSV_KEYS, parse_csv)
XLS = SettingsBlock(XLS_KEYS, parse_xls)


# --- Open edX course structures ------------------------------------------------------------


@dataclass(frozen=True)
class CourseStructuresSettings:
    """What the openedx_course_structures type adds to its connections."""

    # A run fails when more than this share of published courses has no structure.
    max_missing_percent: int = 10


def parse_course_structures(
    check: Checker, d: Mapping[str, Any], path: str
) -> CourseStructuresSettings:
    """The course structures datasource's own settings."""
    return CourseStructuresSettings(
        max_missing_percent=check.integer(d, "max_missing_structures_percent", path, 10, 0, 100)
    )


COURSE_STRUCTURES = SettingsBlock(("max_missing_structures_percent",), parse_course_structures)
