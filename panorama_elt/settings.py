"""Settings: YAML with ${ENV_VAR} values, validated once into frozen dataclasses.

Every problem is collected with its key path (``datasources[1].tables[3].partitions.interval``)
and reported together; nothing connects anywhere before the settings are valid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from panorama_elt.column_types import ColumnType, parse_column_type
from panorama_elt.edfi_schema import snake_case
from panorama_elt.errors import SettingsError, UsageError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INTERVAL_UNITS = (
    "MICROSECOND",
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
    "WEEK",
    "MONTH",
    "QUARTER",
    "YEAR",
)
_INTERVAL = re.compile(r"^\s*(\d+)\s+([A-Za-z]+)\s*$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

DATALAKE_TYPES = ("local", "aws")
DATASOURCE_TYPES = ("mysql", "openedx_course_structures", "edfi_api")

_MYSQL_KEYS = (
    "mysql_host",
    "mysql_port",
    "mysql_username",
    "mysql_password",
    "mysql_database",
    "mysql_time_zone",
)
_TIME_ZONE = re.compile(r"^(SYSTEM|[+-]\d{1,2}:\d{2}|[A-Za-z][A-Za-z0-9_+/-]*)$")
_MONGO_KEYS = (
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
# --- edfi_api datasource keys (self-contained block) ---
_EDFI_KEYS = (
    "base_url",
    "client_id",
    "client_secret",
    "oauth_url",
    "mode",
    "year",
    "instance_code",
    "tenant_code",
    "api_year",
    "page_size",
    "change_version_step_size",
    "num_retries",
    "backoff_factor",
    "retry_statuses",
    "timeout",
    "verify_ssl",
    "fetch_deletes",
    "get_key_changes",
)
_EDFI_TABLE_KEYS = (
    "name",
    "namespace",
    "query_parameters",
    "page_size",
    "datalake_table_name",
    "datalake_table_view",
)
EDFI_MODES = (
    "shared_instance",
    "sandbox",
    "district_specific",
    "year_specific",
    "instance_year_specific",
)
_EDFI_PAGING = (
    "limit",
    "offset",
    "totalCount",
    "minChangeVersion",
    "maxChangeVersion",
    "pageToken",
    "pageSize",
)
_EDFI_RESOURCE = re.compile(r"^[a-z][A-Za-z0-9]*$")
_EDFI_NAMESPACE = re.compile(r"^[a-z][a-z0-9-]*$")
# --- end of edfi_api keys ---
_DATASOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "mysql": ("type", "name", "tables", *_MYSQL_KEYS),
    "openedx_course_structures": ("type", "name", "tables", *_MYSQL_KEYS, *_MONGO_KEYS),
    "edfi_api": ("type", "name", "tables", *_EDFI_KEYS),
}
_DATALAKE_KEYS = (
    "type",
    "base_prefix",
    "datalake_database",
    "datalake_workgroup",
    "base_partitions",
    "path",
    "database_file",
    "panorama_raw_data_bucket",
    "aws_access_key",
    "aws_secret_access_key",
    "aws_region",
    "aws_profile",
    "endpoint_url",
    "athena_output_location",
    "aws_max_attempts",
    "compression",
)
_TABLE_KEYS = ("name", "datalake_table_name", "datalake_table_view", "partitions", "fields")
_PARTITION_KEYS = ("partition_fields", "timestamp_field", "interval")
_FIELD_KEYS = ("name", "type", "value")


@dataclass(frozen=True)
class Interval:
    """A MySQL interval such as ``2 HOUR``."""

    amount: int
    unit: str

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"


@dataclass(frozen=True)
class FieldSettings:
    """One column of a table; ``constant`` fields are written from ``value``, not read."""

    name: str
    type: ColumnType
    constant: bool = False
    value: str | None = None


@dataclass(frozen=True)
class PartitionSettings:
    """Field partitions and the incremental rule of a table."""

    partition_fields: tuple[str, ...]
    timestamp_field: str | None = None
    interval: Interval | None = None


# --- edfi_api datasource settings (self-contained block) ---
@dataclass(frozen=True)
class EdfiTable:
    """What an Ed-Fi table reads: a resource's items, or its ``deletes`` / ``keyChanges``."""

    resource: str
    namespace: str = "ed-fi"
    kind: str = "items"  # items | deletes | keyChanges
    query_parameters: tuple[tuple[str, str], ...] = ()
    page_size: int | None = None
    parent: str | None = None  # deletes / keyChanges tables: the items table they belong to
    deletes_table: str | None = None  # items tables: the raw table of their deletes


@dataclass(frozen=True)
class EdfiSettings:
    """How to reach an Ed-Fi ODS/API and page through it (lightbeam / edu_edfi_airflow names)."""

    base_url: str
    client_id: str | None
    client_secret: str | None = field(repr=False)
    oauth_url: str | None = None
    mode: str = "shared_instance"
    year: int | None = None
    instance_code: str | None = None
    tenant_code: str | None = None
    api_year: int | None = None
    page_size: int = 500
    change_version_step_size: int = 50000
    num_retries: int = 5
    backoff_factor: float = 1.5
    retry_statuses: tuple[int, ...] = (429, 500, 502, 503, 504)
    timeout: float = 60.0
    verify_ssl: bool = True
    fetch_deletes: bool = True
    get_key_changes: bool = False
    path: str = ""


# --- end of edfi_api settings ---


@dataclass(frozen=True)
class TableSettings:
    """A source table and where it lands in the datalake."""

    name: str
    datasource: str
    datalake_table_name: str
    datalake_table_view: str
    fields: tuple[FieldSettings, ...]
    partitions: PartitionSettings | None = None
    path: str = ""
    edfi: EdfiTable | None = None

    @property
    def partition_fields(self) -> tuple[str, ...]:
        """Names of the field partitions (empty when not partitioned by field)."""
        return self.partitions.partition_fields if self.partitions else ()

    @property
    def incremental(self) -> bool:
        """True when only what changed since the stored mark is extracted by default."""
        return bool(self.partitions and self.partitions.interval) or self.edfi is not None

    @property
    def file_fields(self) -> tuple[FieldSettings, ...]:
        """The fields stored as CSV columns (partition fields live in the path)."""
        parts = set(self.partition_fields)
        return tuple(f for f in self.fields if f.name not in parts)

    def field(self, name: str) -> FieldSettings:
        """The field called ``name``."""
        return next(f for f in self.fields if f.name == name)


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


@dataclass(frozen=True)
class DatasourceSettings:
    """A named source of tables."""

    type: str
    name: str
    tables: tuple[TableSettings, ...]
    mysql: MySQLSettings | None = None
    mongodb: MongoSettings | None = None
    path: str = ""
    edfi: EdfiSettings | None = None


@dataclass(frozen=True)
class BasePartition:
    """A partition common to one installation, such as ``lms=lms.example.com``."""

    name: str
    type: ColumnType
    value: str


@dataclass(frozen=True)
class DatalakeSettings:
    """Where files and catalog entries go."""

    type: str
    base_prefix: str | None
    database: str
    workgroup: str
    base_partitions: tuple[BasePartition, ...]
    path: Path | None = None
    database_file: Path | None = None
    bucket: str | None = None
    aws_access_key: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_region: str | None = None
    aws_profile: str | None = None
    endpoint_url: str | None = None
    athena_output_location: str | None = None
    aws_max_attempts: int = 10
    compression: str | None = None


@dataclass(frozen=True)
class Settings:
    """The whole, validated settings file."""

    file: Path
    datalake: DatalakeSettings
    datasources: tuple[DatasourceSettings, ...]

    @property
    def tables(self) -> list[TableSettings]:
        """Every table of every datasource, in settings order."""
        return [t for ds in self.datasources for t in ds.tables]

    def datasource(self, name: str) -> DatasourceSettings:
        """The datasource called ``name``; a usage error lists the valid names otherwise."""
        for ds in self.datasources:
            if ds.name == name:
                return ds
        valid = ", ".join(ds.name for ds in self.datasources) or "none"
        raise UsageError(f"--datasource: no datasource named {name!r} (settings have: {valid})")

    def select(
        self, all_tables: bool, datasource: str | None, tables: Iterable[str] | None
    ) -> list[TableSettings]:
        """The tables a command's --all / --datasource / --tables selection names."""
        if all_tables:
            return self.tables
        chosen = self.datasource(datasource).tables if datasource else tuple(self.tables)
        if not tables:
            return list(chosen)
        by_name = {t.name: t for t in chosen}
        unknown = [name for name in tables if name not in by_name]
        if unknown:
            where = f"datasource {datasource!r}" if datasource else "the settings"
            raise UsageError(
                f"--tables: {', '.join(unknown)} not found in {where} "
                f"(known: {', '.join(by_name) or 'none'})"
            )
        names = list(tables)
        picked = [by_name[name] for name in names]
        # An Ed-Fi resource's deletes and key changes are pulled with it.
        picked += [t for t in chosen if t.edfi and t.edfi.parent in names and t.name not in names]
        return picked


def load_settings(path: str | Path) -> Settings:
    """Read, interpolate and validate a settings file."""
    path = Path(path)
    raw = read_settings_yaml(path)
    return parse_settings(raw, path)


def read_settings_yaml(path: Path) -> Any:
    """The settings file as plain YAML data, before ${ENV} interpolation."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(
            f"settings file {path} not found (copy panorama_settings.yaml.template, "
            "or pass --settings FILE)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SettingsError(f"YAML syntax error{where}: {problem}", str(path)) from None
    if data is None:
        raise SettingsError("the settings file is empty", str(path))
    return data


def parse_settings(raw: Any, path: Path) -> Settings:
    """Validate YAML data into Settings, reporting every problem at once."""
    check = _Checker(path.parent)
    data = check.interpolate(raw, "")
    settings = check.settings(data, path)
    if check.problems:
        raise SettingsError(check.problems, str(path))
    assert settings is not None
    return settings


def parse_interval(text: object) -> Interval:
    """Parse ``<n> <UNIT>``; raise ValueError naming the accepted form."""
    match = _INTERVAL.match(text) if isinstance(text, str) else None
    if not match or match[2].upper() not in INTERVAL_UNITS:
        raise ValueError(
            f"{text!r} is not an interval: use '<n> <unit>' with unit one of "
            + "|".join(INTERVAL_UNITS)
            + " (e.g. '2 hour')"
        )
    return Interval(int(match[1]), match[2].upper())


def is_identifier(name: object) -> bool:
    """True for a plain SQL identifier: letters, digits and underscores, not starting with a digit."""
    return isinstance(name, str) and IDENTIFIER.match(name) is not None


class _Checker:
    """Collects problems with their key paths while building the dataclasses."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def interpolate(self, value: Any, path: str) -> Any:
        if isinstance(value, str):

            def env(match: re.Match[str]) -> str:
                name = match[1]
                if name not in os.environ:
                    self.fail(path, f"environment variable {name} is not set")
                    return ""
                return os.environ[name]

            return _ENV.sub(env, value)
        if isinstance(value, list):
            return [self.interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.interpolate(v, _join(path, str(k))) for k, v in value.items()}
        return value

    def mapping(self, value: Any, path: str, allowed: Iterable[str], what: str) -> dict | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping of {what}, got {_kind(value)}")
            return None
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                hint = _closest(str(key), allowed)
                self.fail(
                    _join(path, str(key)),
                    "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""),
                )
        return value

    def text(self, data: Mapping, key: str, path: str, *, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None or value == "":
            if required:
                self.fail(_join(path, key), "is required")
            return None
        if isinstance(value, (bool, list, dict)):
            self.fail(_join(path, key), f"must be text, got {_kind(value)}")
            return None
        return str(value)

    def identifier(
        self, data: Mapping, key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = self.text(data, key, path, required=required)
        if value is not None and not is_identifier(value):
            self.fail(
                _join(path, key),
                f"{value!r} is not a plain identifier (letters, digits and _, not starting with a digit)",
            )
            return None
        return value

    def integer(self, data: Mapping, key: str, path: str, default: int, low: int, high: int) -> int:
        value = data.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            self.fail(_join(path, key), f"must be a whole number, got {_kind(value)}")
            return default
        try:
            number = int(str(value))
        except ValueError:
            self.fail(_join(path, key), f"must be a whole number, got {value!r}")
            return default
        if not low <= number <= high:
            self.fail(_join(path, key), f"must be between {low} and {high}, got {number}")
            return default
        return number

    def boolean(self, data: Mapping, key: str, path: str, default: bool) -> bool:
        value = data.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "true",
            "yes",
            "on",
            "1",
            "false",
            "no",
            "off",
            "0",
        ):
            return value.lower() in ("true", "yes", "on", "1")
        self.fail(_join(path, key), f"must be true or false, got {value!r}")
        return default

    def local_path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(os.path.expanduser(value))
        # Relative paths are relative to the settings file, so cron may run from anywhere.
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def settings(self, data: Any, path: Path) -> Settings | None:
        top = self.mapping(data, "", ("datalake", "datasources"), "'datalake' and 'datasources'")
        if top is None:
            return None
        datalake = None
        if "datalake" not in top:
            self.fail("datalake", "is required")
        else:
            datalake = self.datalake(top["datalake"], "datalake")
        sources_raw = top.get("datasources")
        sources: list[DatasourceSettings] = []
        if not isinstance(sources_raw, list) or not sources_raw:
            self.fail(
                "datasources", f"must be a non-empty list of datasources, got {_kind(sources_raw)}"
            )
        else:
            seen: dict[str, str] = {}
            for i, raw in enumerate(sources_raw):
                ds = self.datasource(raw, f"datasources[{i}]", datalake)
                if ds is None:
                    continue
                if ds.name in seen:
                    self.fail(
                        f"datasources[{i}].name",
                        f"duplicate datasource name {ds.name!r} (also {seen[ds.name]})",
                    )
                seen[ds.name] = f"datasources[{i}]"
                sources.append(ds)
            self.unique_datalake_names(sources)
        if datalake is None:
            return None
        return Settings(file=path, datalake=datalake, datasources=tuple(sources))

    def unique_datalake_names(self, sources: list[DatasourceSettings]) -> None:
        owners: dict[str, str] = {}
        folders: dict[str, str] = {}
        for ds in sources:
            for table in ds.tables:
                # Files live under <base_prefix>/<table name>/: two tables of that name in
                # different datasources would overwrite each other's files.
                if table.name in folders:
                    self.fail(
                        _join(table.path, "name"),
                        f"table {table.name!r} is also in {folders[table.name]}; its files would "
                        "share one folder (use another base_prefix, or another settings file)",
                    )
                folders[table.name] = table.path
                for name in (table.datalake_table_name, table.datalake_table_view):
                    if name in owners:
                        self.fail(
                            table.path, f"datalake name {name!r} is also used by {owners[name]}"
                        )
                    owners[name] = table.path

    def datalake(self, data: Any, path: str) -> DatalakeSettings | None:
        d = self.mapping(data, path, _DATALAKE_KEYS, "datalake settings")
        if d is None:
            return None
        kind = self.text(d, "type", path) or "local"
        if kind not in DATALAKE_TYPES:
            self.fail(
                _join(path, "type"),
                f"unknown datalake type {kind!r} (valid: {', '.join(DATALAKE_TYPES)})",
            )
        bucket = self.text(d, "panorama_raw_data_bucket", path, required=kind == "aws")
        local = self.text(d, "path", path) or ("datalake" if kind == "local" else None)
        compression = self.text(d, "compression", path)
        if compression not in (None, "gzip", "none"):
            self.fail(_join(path, "compression"), f"must be gzip or none, got {compression!r}")
        database = self.identifier(d, "datalake_database", path) or "panorama"
        base_parts = self.base_partitions(d.get("base_partitions"), _join(path, "base_partitions"))
        return DatalakeSettings(
            type=kind,
            base_prefix=self.identifier(d, "base_prefix", path),
            database=database,
            workgroup=self.text(d, "datalake_workgroup", path) or "primary",
            base_partitions=base_parts,
            path=self.local_path(local),
            database_file=self.local_path(self.text(d, "database_file", path)),
            bucket=bucket,
            aws_access_key=self.text(d, "aws_access_key", path),
            aws_secret_access_key=self.text(d, "aws_secret_access_key", path),
            aws_region=self.text(d, "aws_region", path),
            aws_profile=self.text(d, "aws_profile", path),
            endpoint_url=self.text(d, "endpoint_url", path),
            athena_output_location=self.text(d, "athena_output_location", path),
            aws_max_attempts=self.integer(d, "aws_max_attempts", path, 10, 1, 100),
            compression=None if compression in (None, "none") else compression,
        )

    def base_partitions(self, data: Any, path: str) -> tuple[BasePartition, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.fail(path, f"must be a list of {{name, type, value}}, got {_kind(data)}")
            return ()
        parts: list[BasePartition] = []
        for i, raw in enumerate(data):
            p = f"{path}[{i}]"
            d = self.mapping(raw, p, ("name", "type", "value"), "name, type and value")
            if d is None:
                continue
            name = self.identifier(d, "name", p, required=True)
            value = self.text(d, "value", p, required=True)
            ctype = self.column_type(d.get("type") or "varchar", _join(p, "type"))
            if name in {bp.name for bp in parts}:
                self.fail(_join(p, "name"), f"duplicate base partition {name!r}")
            if name and value is not None and ctype:
                parts.append(BasePartition(name, ctype, value))
        return tuple(parts)

    def time_zone(self, data: Mapping, path: str) -> str | None:
        value = self.text(data, "mysql_time_zone", path)
        if value is not None and not _TIME_ZONE.match(value):
            self.fail(
                _join(path, "mysql_time_zone"),
                f"{value!r} is not a time zone (use an offset such as '+00:00', SYSTEM, or a name)",
            )
            return None
        return value

    def column_type(self, value: Any, path: str) -> ColumnType | None:
        try:
            return parse_column_type(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def datasource(
        self, data: Any, path: str, datalake: DatalakeSettings | None
    ) -> DatasourceSettings | None:
        if not isinstance(data, dict):
            self.fail(path, f"must be a mapping with type, name and tables, got {_kind(data)}")
            return None
        kind = self.text(data, "type", path, required=True)
        if kind is None:
            return None
        if kind not in DATASOURCE_TYPES:
            self.fail(
                _join(path, "type"),
                f"unknown datasource type {kind!r} (valid: {', '.join(DATASOURCE_TYPES)})",
            )
            return None
        d = self.mapping(data, path, _DATASOURCE_KEYS[kind], f"{kind} datasource settings")
        assert d is not None
        name = self.identifier(d, "name", path, required=True)
        if name is None:
            return None
        if kind == "edfi_api":
            return self.edfi_datasource(d, path, name, datalake)
        mysql = None
        if kind == "mysql" or any(
            d.get(k) not in (None, "") for k in ("mysql_host", "mysql_username")
        ):
            mysql = MySQLSettings(
                host=self.text(d, "mysql_host", path) or "localhost",
                port=self.integer(d, "mysql_port", path, 3306, 1, 65535),
                username=self.text(d, "mysql_username", path),
                password=self.text(d, "mysql_password", path),
                database=self.identifier(d, "mysql_database", path),
                path=path,
                time_zone=self.time_zone(d, path),
            )
        mongodb = None
        if kind == "openedx_course_structures":
            mongodb = MongoSettings(
                host=self.text(d, "mongodb_host", path) or "localhost",
                port=self.integer(d, "mongodb_port", path, 27017, 1, 65535),
                username=self.text(d, "mongodb_username", path),
                password=self.text(d, "mongodb_password", path),
                database=self.text(d, "mongodb_database", path) or "edxapp",
                auth_source=self.text(d, "mongodb_auth_source", path),
                replica_set=self.text(d, "mongodb_replica_set", path),
                tls=self.boolean(d, "mongodb_tls", path, False),
                uri=self.text(d, "mongodb_uri", path),
                timeout_seconds=float(
                    self.integer(d, "mongodb_timeout_seconds", path, 10, 1, 3600)
                ),
                path=path,
            )
        tables = self.tables(d.get("tables"), _join(path, "tables"), name, datalake)
        return DatasourceSettings(kind, name, tables, mysql, mongodb, path)

    # --- edfi_api datasource (self-contained block) ---

    def edfi_datasource(
        self, d: Mapping, path: str, name: str, datalake: DatalakeSettings | None
    ) -> DatasourceSettings:
        base_url = (self.text(d, "base_url", path, required=True) or "").rstrip("/")
        if base_url and not base_url.startswith(("http://", "https://")):
            self.fail(_join(path, "base_url"), f"{base_url!r} is not an http(s) URL")
        mode = self.text(d, "mode", path) or "shared_instance"
        if mode not in EDFI_MODES:
            self.fail(
                _join(path, "mode"), f"unknown mode {mode!r} (valid: {', '.join(EDFI_MODES)})"
            )
        year = self.integer(d, "year", path, 0, 1900, 9999) or None
        instance = self.text(d, "instance_code", path)
        if mode in ("year_specific", "instance_year_specific") and year is None:
            self.fail(_join(path, "year"), f"is required in mode {mode}")
        if mode == "instance_year_specific" and instance is None:
            self.fail(_join(path, "instance_code"), f"is required in mode {mode}")
        statuses = d.get("retry_statuses")
        retry: tuple[int, ...] = EdfiSettings.retry_statuses
        if statuses not in (None, ""):
            if not isinstance(statuses, list) or not all(
                isinstance(c, int) and 400 <= c <= 599 for c in statuses
            ):
                self.fail(_join(path, "retry_statuses"), "must be a list of HTTP status codes")
            else:
                retry = tuple(statuses)
        backoff = d.get("backoff_factor")
        if backoff in (None, ""):
            backoff = 1.5
        elif isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
            self.fail(_join(path, "backoff_factor"), f"must be a number >= 0, got {backoff!r}")
            backoff = 1.5
        edfi = EdfiSettings(
            base_url=base_url,
            client_id=self.text(d, "client_id", path, required=True),
            client_secret=self.text(d, "client_secret", path, required=True),
            oauth_url=self.text(d, "oauth_url", path),
            mode=mode,
            year=year,
            instance_code=instance,
            tenant_code=self.text(d, "tenant_code", path),
            api_year=self.integer(d, "api_year", path, 0, 1900, 9999) or year,
            page_size=self.integer(d, "page_size", path, 500, 1, 500),
            change_version_step_size=self.integer(
                d, "change_version_step_size", path, 50000, 1, 2**62
            ),
            num_retries=self.integer(d, "num_retries", path, 5, 0, 100),
            backoff_factor=float(backoff),
            retry_statuses=retry,
            timeout=float(self.integer(d, "timeout", path, 60, 1, 3600)),
            verify_ssl=self.boolean(d, "verify_ssl", path, True),
            fetch_deletes=self.boolean(d, "fetch_deletes", path, True),
            get_key_changes=self.boolean(d, "get_key_changes", path, False),
            path=path,
        )
        tables = self.edfi_tables(d.get("tables"), _join(path, "tables"), name, edfi, datalake)
        return DatasourceSettings("edfi_api", name, tables, path=path, edfi=edfi)

    def edfi_tables(
        self,
        data: Any,
        path: str,
        datasource: str,
        edfi: EdfiSettings,
        datalake: DatalakeSettings | None,
    ) -> tuple[TableSettings, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.fail(path, f"must be a list of resources (each '- name: ...'), got {_kind(data)}")
            return ()
        result: list[TableSettings] = []
        for i, raw in enumerate(data):
            p = f"{path}[{i}]"
            if isinstance(raw, str):
                raw = {"name": raw}
            d = self.mapping(raw, p, _EDFI_TABLE_KEYS, "resource settings")
            if d is None:
                continue
            resource = self.text(d, "name", p, required=True)
            namespace = self.text(d, "namespace", p) or "ed-fi"
            if resource is None:
                continue
            if not _EDFI_RESOURCE.match(resource):
                self.fail(
                    _join(p, "name"),
                    f"{resource!r} is not an Ed-Fi resource name (camelCase, e.g. studentSchoolAssociations)",
                )
                continue
            if not _EDFI_NAMESPACE.match(namespace):
                self.fail(
                    _join(p, "namespace"),
                    f"{namespace!r} is not an Ed-Fi namespace (e.g. ed-fi, tpdm)",
                )
                continue
            params = d.get("query_parameters") or {}
            if not isinstance(params, dict) or not all(
                isinstance(v, (str, int, bool)) for v in params.values()
            ):
                self.fail(_join(p, "query_parameters"), "must be a mapping of parameter: value")
                params = {}
            paging = sorted(set(params) & set(_EDFI_PAGING))
            if paging:
                self.fail(
                    _join(p, "query_parameters"),
                    f"cannot set {', '.join(paging)} (the extraction pages and windows itself)",
                )
                params = {}
            snake = snake_case(resource)
            result += self.edfi_resource_tables(
                d,
                p,
                EdfiTable(
                    resource=resource,
                    namespace=namespace,
                    query_parameters=tuple((k, _query_text(v)) for k, v in params.items()),
                    page_size=self.integer(d, "page_size", p, 0, 1, 500) or None,
                ),
                snake if namespace == "ed-fi" else f"{namespace.replace('-', '_')}_{snake}",
                datasource,
                edfi,
                f"{datalake.base_prefix}_" if datalake and datalake.base_prefix else "",
            )
        seen: set[str] = set()
        for table in result:
            if table.name in seen:
                self.fail(_join(table.path, "name"), f"duplicate table name {table.name!r}")
            seen.add(table.name)
        return tuple(result)

    def edfi_resource_tables(
        self,
        d: Mapping,
        path: str,
        spec: EdfiTable,
        name: str,
        datasource: str,
        edfi: EdfiSettings,
        prefix: str,
    ) -> list[TableSettings]:
        """A resource's items table, then its deletes and key changes tables when pulled."""
        kinds = ["items"]
        if not spec.resource.endswith("Descriptors"):  # descriptors have no change tracking
            kinds += ["deletes"] if edfi.fetch_deletes else []
            kinds += ["keyChanges"] if edfi.get_key_changes else []
        suffix = {"items": "", "deletes": "_deletes", "keyChanges": "_key_changes"}
        raw_names = {k: f"{prefix}raw_{name}{suffix[k]}" for k in kinds}
        raw_names["items"] = (
            self.identifier(d, "datalake_table_name", path) or raw_names["items"]
        ).lower()
        items_view = self.identifier(d, "datalake_table_view", path) or f"{prefix}table_{name}"
        tables = []
        for kind in kinds:
            tables.append(
                TableSettings(
                    name=name + suffix[kind],
                    datasource=datasource,
                    datalake_table_name=raw_names[kind],
                    datalake_table_view=(
                        items_view if kind == "items" else f"{prefix}table_{name}{suffix[kind]}"
                    ).lower(),
                    fields=_edfi_fields(edfi, kind),
                    partitions=PartitionSettings(_edfi_partitions(edfi)),
                    path=path,
                    edfi=replace(
                        spec,
                        kind=kind,
                        parent=name if kind != "items" else None,
                        deletes_table=raw_names.get("deletes") if kind == "items" else None,
                    ),
                )
            )
        return tables

    # --- end of edfi_api datasource ---

    def tables(
        self, data: Any, path: str, datasource: str, datalake: DatalakeSettings | None
    ) -> tuple[TableSettings, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.fail(path, f"must be a list of tables (each '- name: ...'), got {_kind(data)}")
            return ()
        result: list[TableSettings] = []
        seen: set[str] = set()
        for i, raw in enumerate(data):
            p = f"{path}[{i}]"
            table = self.table(raw, p, datasource, datalake)
            if table is None:
                continue
            if table.name in seen:
                self.fail(_join(p, "name"), f"duplicate table name {table.name!r}")
            seen.add(table.name)
            result.append(table)
        return tuple(result)

    def table(
        self, data: Any, path: str, datasource: str, datalake: DatalakeSettings | None
    ) -> TableSettings | None:
        d = self.mapping(data, path, _TABLE_KEYS, "table settings")
        if d is None:
            return None
        name = self.identifier(d, "name", path, required=True)
        fields = self.fields(d.get("fields"), _join(path, "fields"))
        partitions = self.partitions(d.get("partitions"), _join(path, "partitions"), fields)
        if name is None:
            return None
        prefix = f"{datalake.base_prefix}_" if datalake and datalake.base_prefix else ""
        return TableSettings(
            name=name,
            datasource=datasource,
            datalake_table_name=(
                self.identifier(d, "datalake_table_name", path) or f"{prefix}raw_{name}"
            ).lower(),
            datalake_table_view=(
                self.identifier(d, "datalake_table_view", path) or f"{prefix}table_{name}"
            ).lower(),
            fields=fields,
            partitions=partitions,
            path=path,
        )

    def fields(self, data: Any, path: str) -> tuple[FieldSettings, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.fail(path, f"must be a list of {{name, type}}, got {_kind(data)}")
            return ()
        result: list[FieldSettings] = []
        seen: set[str] = set()
        for i, raw in enumerate(data):
            p = f"{path}[{i}]"
            d = self.mapping(raw, p, _FIELD_KEYS, "name, type and value")
            if d is None:
                continue
            name = self.identifier(d, "name", p, required=True)
            ctype = self.column_type(d.get("type"), _join(p, "type")) if "type" in d else None
            if "type" not in d:
                self.fail(_join(p, "type"), "is required")
            if name and name.lower() in seen:
                self.fail(_join(p, "name"), f"duplicate field name {name!r}")
            if name and ctype:
                seen.add(name.lower())
                constant = "value" in d
                value = d.get("value")
                result.append(
                    FieldSettings(name, ctype, constant, None if value is None else str(value))
                )
        return tuple(result)

    def partitions(
        self, data: Any, path: str, fields: tuple[FieldSettings, ...]
    ) -> PartitionSettings | None:
        if data is None:
            return None
        d = self.mapping(data, path, _PARTITION_KEYS, "partition settings")
        if d is None:
            return None
        names = {f.name: f for f in fields}
        raw_fields = d.get("partition_fields") or []
        if isinstance(raw_fields, str):
            raw_fields = [raw_fields]
        part_fields: list[str] = []
        if not isinstance(raw_fields, list):
            self.fail(
                _join(path, "partition_fields"),
                f"must be a list of field names, got {_kind(raw_fields)}",
            )
            raw_fields = []
        for i, pf in enumerate(raw_fields):
            p = f"{_join(path, 'partition_fields')}[{i}]"
            if not isinstance(pf, str) or pf not in names:
                self.fail(p, f"{pf!r} is not one of the table's fields")
            elif names[pf].constant:
                self.fail(p, f"{pf!r} has a constant value and cannot partition the table")
            else:
                part_fields.append(pf)
        timestamp = self.text(d, "timestamp_field", path)
        if timestamp is not None and timestamp not in names:
            self.fail(
                _join(path, "timestamp_field"), f"{timestamp!r} is not one of the table's fields"
            )
        interval = None
        if d.get("interval") not in (None, ""):
            try:
                interval = parse_interval(d["interval"])
            except ValueError as exc:
                self.fail(_join(path, "interval"), str(exc))
            if timestamp is None:
                self.fail(_join(path, "timestamp_field"), "is required when interval is set")
            if not raw_fields:
                self.fail(
                    _join(path, "partition_fields"),
                    "incremental updates need at least one partition field",
                )
        elif timestamp is not None:
            self.fail(_join(path, "interval"), "is required when timestamp_field is set")
        if not part_fields and not raw_fields:
            return None
        return PartitionSettings(tuple(part_fields), timestamp, interval)


# --- edfi_api helpers (self-contained block) ---
def _edfi_partitions(edfi: EdfiSettings) -> tuple[str, ...]:
    """tenant_code and api_year (when set) then the pull: every Ed-Fi row's partition values."""
    return (
        *(("tenant_code",) if edfi.tenant_code else ()),
        *(("api_year",) if edfi.api_year else ()),
        "pull",
    )


_EDFI_TYPES = {
    "tenant_code": "varchar(255)",
    "api_year": "int",
    "pull": "bigint",
    "id": "varchar(36)",
    "change_version": "bigint",
    "doc": "json",
}


def _edfi_fields(edfi: EdfiSettings, kind: str) -> tuple[FieldSettings, ...]:
    """The raw columns of an Ed-Fi table: partitions, id, (change_version,) and the JSON doc."""
    changes = ("change_version",) if kind != "items" else ()
    names = (*_edfi_partitions(edfi), "id", *changes, "doc")
    return tuple(FieldSettings(n, parse_column_type(_EDFI_TYPES[n])) for n in names)


def _query_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# --- end of edfi_api helpers ---


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return f"text ({value!r})"


def _closest(key: str, allowed: Iterable[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.75)
    return matches[0] if matches else None
