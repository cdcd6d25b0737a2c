"""Settings blocks of the datasource plugins: typed connection settings, their keys and checks.

Imports no driver: the registry in ``datasources/__init__.py`` declares these blocks, and
settings validation reads them without loading pymysql or pymongo.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from panorama_elt.plugins import SettingsBlock
from panorama_elt.settings_check import Checker, join, key_set

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


MYSQL_KEYS = (
    "mysql_host",
    "mysql_port",
    "mysql_username",
    "mysql_password",
    "mysql_database",
    "mysql_time_zone",
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
    )


def parse_optional_mysql(check: Checker, d: Mapping[str, Any], path: str) -> MySQLSettings | None:
    """A MySQL connection only when one is configured (a host or a user is set)."""
    if not any(key_set(d, k) for k in ("mysql_host", "mysql_username")):
        return None
    return parse_mysql(check, d, path)


def parse_mongodb(check: Checker, d: Mapping[str, Any], path: str) -> MongoSettings:
    """The MongoDB connection of a datasource."""
    return MongoSettings(
        host=check.text(d, "mongodb_host", path) or "localhost",
        port=check.integer(d, "mongodb_port", path, 27017, 1, 65535),
        username=check.text(d, "mongodb_username", path),
        password=check.text(d, "mongodb_password", path),
        database=check.text(d, "mongodb_database", path) or "edxapp",
        auth_source=check.text(d, "mongodb_auth_source", path),
        replica_set=check.text(d, "mongodb_replica_set", path),
        tls=check.boolean(d, "mongodb_tls", path, False),
        uri=check.text(d, "mongodb_uri", path),
        timeout_seconds=float(check.integer(d, "mongodb_timeout_seconds", path, 10, 1, 3600)),
        path=path,
    )


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
