"""Object keys of the datalake, as pure functions of the settings."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote, unquote

from panorama_elt.encoding import encode_value
from panorama_elt.settings import DatalakeSettings, TableSettings

STATE_FOLDER = "_panorama_state"


def table_folder(table: TableSettings, datalake: DatalakeSettings) -> str:
    """``[<base_prefix>/]<table>``: the folder every file of the table lives under."""
    return f"{datalake.base_prefix}/{table.name}" if datalake.base_prefix else table.name


def partition_names(table: TableSettings, datalake: DatalakeSettings) -> tuple[str, ...]:
    """Names of the table's partition keys: base partitions, then field partitions."""
    return tuple(bp.name for bp in datalake.base_partitions) + table.partition_fields


def base_values(datalake: DatalakeSettings) -> tuple[str, ...]:
    """This installation's base partition values, as registered in the catalog."""
    return tuple(encode_value(bp.value) for bp in datalake.base_partitions)


def partition_folder(
    table: TableSettings, datalake: DatalakeSettings, values: Sequence[str]
) -> str:
    """The folder of one partition; ``values`` are the registered (encoded) values.

    Each value is percent-quoted with no safe characters, so '/', '..' or '=' can never
    leave the table's folder, and ``name=`` prefixes every level.
    """
    return folder_of(table, datalake, partition_names(table, datalake), values)


def folder_of(
    table: TableSettings, datalake: DatalakeSettings, names: Sequence[str], values: Sequence[str]
) -> str:
    """The folder of a partition with the given key names (also an older layout's)."""
    if len(names) != len(values):
        raise ValueError(f"{table.name}: {len(values)} partition values for {len(names)} keys")
    levels = [f"{name}={quote(value, safe='')}" for name, value in zip(names, values, strict=True)]
    return "/".join([table_folder(table, datalake), *levels])


def object_key(table: TableSettings, datalake: DatalakeSettings, values: Sequence[str]) -> str:
    """The key of the one file of a partition (or of the whole table)."""
    return f"{partition_folder(table, datalake, values)}/{table.name}{file_suffix(datalake)}"


def file_suffix(datalake: DatalakeSettings) -> str:
    """.parquet, .csv.gz or .csv: what the datalake's files end with."""
    if datalake.file_format == "parquet":
        return ".parquet"
    return ".csv.gz" if datalake.compression == "gzip" else ".csv"


def format_of_file(name: str) -> str:
    """The file format (csv or parquet) of a file name the writers produced."""
    return "parquet" if name.endswith(".parquet") else "csv"


def other_suffix(key: str) -> str:
    """The same file with the other compression suffix (.csv <-> .csv.gz)."""
    return key[: -len(".gz")] if key.endswith(".gz") else key + ".gz"


def values_from_folder(folder: str) -> tuple[str, ...]:
    """The registered values of a partition folder (inverse of partition_folder's levels)."""
    return tuple(unquote(level.split("=", 1)[1]) for level in folder.split("/") if "=" in level)


def state_key(table: TableSettings, datalake: DatalakeSettings) -> str:
    """Where the table's high-water mark for this installation is kept."""
    levels = [
        f"{bp.name}={quote(encode_value(bp.value), safe='')}" for bp in datalake.base_partitions
    ]
    root = f"{datalake.base_prefix}/{STATE_FOLDER}" if datalake.base_prefix else STATE_FOLDER
    return "/".join([root, table.datalake_table_name, *levels, "state.json"])
