"""Settings: YAML with ${ENV_VAR} values, validated once into frozen dataclasses.

Every problem is collected with its key path (``datasources[1].tables[3].partitions.interval``)
and reported together; nothing connects anywhere before the settings are valid.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from panorama_elt.column_types import ColumnType, parse_column_type
from panorama_elt.datalakes import DEFAULT_TYPE as DEFAULT_DATALAKE
from panorama_elt.datalakes import REGISTRY as DATALAKES
from panorama_elt.datasources import REGISTRY as DATASOURCES
from panorama_elt.datasources.source_settings import MongoSettings, MySQLSettings
from panorama_elt.errors import SettingsError, UsageError
from panorama_elt.plugins import Plugin, TablesContext, misplaced_keys, unknown_type
from panorama_elt.settings_check import Checker, is_identifier, join, kind_of

__all__ = ["MongoSettings", "MySQLSettings", "is_identifier"]  # read by the datasources

_Block = TypeVar("_Block")

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

# Keys of every datasource and every datalake; each plugin type adds its own (its REGISTRY entry).
_DATASOURCE_KEYS = ("type", "name", "tables")
_DATALAKE_KEYS = (
    "type",
    "base_prefix",
    "datalake_database",
    "base_partitions",
    "compression",
    "views_folder",
    "file_format",
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
    # What an edfi_api table reads (datasources/edfi_settings.EdfiTable); None for other types.
    edfi: Any = None

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
class DatasourceSettings:
    """A named source of tables."""

    type: str
    name: str
    tables: tuple[TableSettings, ...]
    path: str = ""
    # The typed values of the type's settings blocks (MySQLSettings, MongoSettings, ...).
    blocks: tuple[object, ...] = ()

    def block(self, kind: builtins.type[_Block]) -> _Block | None:
        """This datasource's settings of dataclass ``kind``, or None when it has none."""
        return next((b for b in self.blocks if isinstance(b, kind)), None)

    @property
    def mysql(self) -> MySQLSettings | None:
        """The MySQL connection (mysql datasources; the course index of course structures)."""
        return self.block(MySQLSettings)

    @property
    def mongodb(self) -> MongoSettings | None:
        """The MongoDB connection (course structures)."""
        return self.block(MongoSettings)


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
    base_partitions: tuple[BasePartition, ...]
    workgroup: str = "primary"
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
    views_folder: Path | None = None  # the installation's own views (*.sql), made after ours
    # csv (OpenCSVSerde text, the original's layout) or parquet (typed columns); see file_formats.
    file_format: str = "csv"


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


def secret_values(settings: object) -> list[str]:
    """The values of a settings dataclass's secret fields: those hidden from its repr."""
    return [
        value
        for f in dataclasses.fields(settings)  # type: ignore[arg-type]
        if not f.repr and isinstance(value := getattr(settings, f.name), str)
    ]


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
    check = _SettingsChecker(path.parent)
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


class _SettingsChecker(Checker):
    """Builds the Settings dataclasses; plugin types' own keys are read by their blocks."""

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
                "datasources",
                f"must be a non-empty list of datasources, got {kind_of(sources_raw)}",
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
                        join(table.path, "name"),
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
        kind = self.text(data, "type", path) if isinstance(data, dict) else None
        kind = kind or DEFAULT_DATALAKE
        found = self.plugin_settings(DATALAKES, kind, "datalake", data, path, _DATALAKE_KEYS)
        if found is None:
            return None
        plugin, d = found
        compression = self.text(d, "compression", path)
        if compression not in (None, "gzip", "none"):
            self.fail(join(path, "compression"), f"must be gzip or none, got {compression!r}")
        file_format = self.file_format(d, path, compression)
        specific: dict[str, Any] = {}
        for block in plugin.blocks:
            specific.update(block.parse(self, d, path))
        return DatalakeSettings(
            type=kind,
            base_prefix=self.identifier(d, "base_prefix", path),
            database=self.identifier(d, "datalake_database", path) or "panorama",
            base_partitions=self.base_partitions(
                d.get("base_partitions"), join(path, "base_partitions")
            ),
            compression=None if compression in (None, "none") else compression,
            views_folder=self.local_path(self.text(d, "views_folder", path)),
            file_format=file_format,
            **specific,
        )

    def file_format(self, d: Mapping[str, Any], path: str, compression: str | None) -> str:
        """``file_format``: csv (default) or parquet; gzip is for CSV files only."""
        file_format = self.text(d, "file_format", path) or "csv"
        if file_format not in ("csv", "parquet"):
            self.fail(join(path, "file_format"), f"must be csv or parquet, got {file_format!r}")
        elif file_format == "parquet" and compression == "gzip":
            self.fail(
                join(path, "compression"),
                "gzip applies to csv files; parquet files are compressed inside (zstd): "
                "remove compression or set it to none",
            )
        return file_format

    def plugin_settings(
        self,
        registry: Mapping[str, Plugin],
        kind: str,
        what: str,
        data: Any,
        path: str,
        common: tuple[str, ...],
    ) -> tuple[Plugin, dict] | None:
        """The plugin of type ``kind`` and its settings, checked against that type's own keys."""
        plugin = registry.get(kind)
        if plugin is None:
            self.fail(join(path, "type"), unknown_type(registry, kind, what))
            return None
        d = self.mapping(
            data,
            path,
            (*common, *plugin.keys),
            f"{kind} {what} settings",
            misplaced_keys(registry, kind, what),
        )
        return None if d is None else (plugin, d)

    def base_partitions(self, data: Any, path: str) -> tuple[BasePartition, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.fail(path, f"must be a list of {{name, type, value}}, got {kind_of(data)}")
            return ()
        parts: list[BasePartition] = []
        for i, raw in enumerate(data):
            p = f"{path}[{i}]"
            d = self.mapping(raw, p, ("name", "type", "value"), "name, type and value")
            if d is None:
                continue
            name = self.identifier(d, "name", p, required=True)
            value = self.text(d, "value", p, required=True)
            ctype = self.column_type(d.get("type") or "varchar", join(p, "type"))
            if name in {bp.name for bp in parts}:
                self.fail(join(p, "name"), f"duplicate base partition {name!r}")
            if name and value is not None and ctype:
                parts.append(BasePartition(name, ctype, value))
        return tuple(parts)

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
            self.fail(path, f"must be a mapping with type, name and tables, got {kind_of(data)}")
            return None
        kind = self.text(data, "type", path, required=True)
        if kind is None:
            return None
        found = self.plugin_settings(DATASOURCES, kind, "datasource", data, path, _DATASOURCE_KEYS)
        if found is None:
            return None
        plugin, d = found
        name = self.identifier(d, "name", path, required=True)
        if name is None:
            return None
        blocks = tuple(b for b in (block.parse(self, d, path) for block in plugin.blocks) if b)

        def common(data: Any, where: str) -> tuple[TableSettings, ...]:
            return self.tables(data, where, name, datalake)

        where = join(path, "tables")
        if plugin.tables is None:
            tables = common(d.get("tables"), where)
        else:
            context = TablesContext(name, datalake, common)
            tables = plugin.tables(self, d.get("tables"), where, blocks, context)
        return DatasourceSettings(kind, name, tables, path, blocks)

    def tables(
        self, data: Any, path: str, datasource: str, datalake: DatalakeSettings | None
    ) -> tuple[TableSettings, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.fail(path, f"must be a list of tables (each '- name: ...'), got {kind_of(data)}")
            return ()
        result: list[TableSettings] = []
        seen: set[str] = set()
        for i, raw in enumerate(data):
            p = f"{path}[{i}]"
            table = self.table(raw, p, datasource, datalake)
            if table is None:
                continue
            if table.name in seen:
                self.fail(join(p, "name"), f"duplicate table name {table.name!r}")
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
        fields = self.fields(d.get("fields"), join(path, "fields"))
        partitions = self.partitions(d.get("partitions"), join(path, "partitions"), fields)
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
            self.fail(path, f"must be a list of {{name, type}}, got {kind_of(data)}")
            return ()
        result: list[FieldSettings] = []
        seen: set[str] = set()
        for i, raw in enumerate(data):
            p = f"{path}[{i}]"
            d = self.mapping(raw, p, _FIELD_KEYS, "name, type and value")
            if d is None:
                continue
            name = self.identifier(d, "name", p, required=True)
            ctype = self.column_type(d.get("type"), join(p, "type")) if "type" in d else None
            if "type" not in d:
                self.fail(join(p, "type"), "is required")
            if name and name.lower() in seen:
                self.fail(join(p, "name"), f"duplicate field name {name!r}")
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
                join(path, "partition_fields"),
                f"must be a list of field names, got {kind_of(raw_fields)}",
            )
            raw_fields = []
        for i, pf in enumerate(raw_fields):
            p = f"{join(path, 'partition_fields')}[{i}]"
            if not isinstance(pf, str) or pf not in names:
                self.fail(p, f"{pf!r} is not one of the table's fields")
            elif names[pf].constant:
                self.fail(p, f"{pf!r} has a constant value and cannot partition the table")
            else:
                part_fields.append(pf)
        timestamp = self.text(d, "timestamp_field", path)
        if timestamp is not None and timestamp not in names:
            self.fail(
                join(path, "timestamp_field"), f"{timestamp!r} is not one of the table's fields"
            )
        interval = None
        if d.get("interval") not in (None, ""):
            try:
                interval = parse_interval(d["interval"])
            except ValueError as exc:
                self.fail(join(path, "interval"), str(exc))
            if timestamp is None:
                self.fail(join(path, "timestamp_field"), "is required when interval is set")
            if not raw_fields:
                self.fail(
                    join(path, "partition_fields"),
                    "incremental updates need at least one partition field",
                )
        elif timestamp is not None:
            self.fail(join(path, "interval"), "is required when timestamp_field is set")
        if not part_fields and not raw_fields:
            return None
        return PartitionSettings(tuple(part_fields), timestamp, interval)
