"""SQL of the typed views, from one field list, in the Athena (Trino) and DuckDB dialects."""

from __future__ import annotations

from dataclasses import dataclass

from panorama_elt.column_types import ColumnType
from panorama_elt.encoding import decode_sql, null_sql
from panorama_elt.settings import DatalakeSettings, TableSettings

DIALECTS = ("duckdb", "athena")


@dataclass(frozen=True)
class ViewColumn:
    """One column of a typed view: its name and source type."""

    name: str
    type: ColumnType


def quote_name(name: str) -> str:
    """A double-quoted identifier (validated names only; reserved words are fine)."""
    return '"' + name.replace('"', '""') + '"'


def raw_columns(table: TableSettings, datalake: DatalakeSettings) -> list[str]:
    """Columns of the raw table: the file's columns, then base and field partitions."""
    return (
        [f.name for f in table.file_fields]
        + [bp.name for bp in datalake.base_partitions]
        + list(table.partition_fields)
    )


def view_columns(table: TableSettings, datalake: DatalakeSettings) -> list[ViewColumn]:
    """Columns of the typed view: every field in settings order, then the base partitions."""
    return [ViewColumn(f.name, f.type) for f in table.fields] + [
        ViewColumn(bp.name, bp.type) for bp in datalake.base_partitions
    ]


def column_sql(column: str, ctype: ColumnType, dialect: str) -> str:
    """The expression that turns a raw (encoded text) column into its typed value."""
    kind = ctype.kind
    ref = quote_name(column)
    view_type = ctype.view_type
    if kind == "text":
        return decode_sql(ref)
    value = null_sql(ref)
    if kind == "time" or view_type == "VARCHAR":
        return value
    if kind == "binary":
        return f"from_hex({value})" if dialect == "athena" else f"unhex({value})"
    if kind in ("datetime", "date"):
        target = view_type
        if kind == "datetime" and dialect == "athena":
            target = "TIMESTAMP(6)"  # Trino's bare TIMESTAMP keeps milliseconds only
        zero = f"substr({value}, 1, 4) = '0000' OR substr({value}, 6, 2) = '00' OR substr({value}, 9, 2) = '00'"
        return f"CASE WHEN {zero} THEN NULL ELSE CAST({value} AS {target}) END"
    return f"CAST({value} AS {view_type})"


def typed_column_sql(column: str, ctype: ColumnType, dialect: str) -> str:
    """The expression over a raw column that already holds its type (a Parquet file column).

    On Athena a DATETIME column is declared bigint in Glue (its microseconds since 1970, see
    datalakes/aws.py): Athena reads Parquet timestamps of Hive tables to milliseconds only.
    """
    ref = quote_name(column)
    if ctype.kind == "datetime" and dialect == "athena":
        return f"CAST(from_unixtime_nanos(CAST({ref} AS DECIMAL(38,0)) * 1000) AS TIMESTAMP(6))"
    return f"CAST({ref} AS {ctype.view_type})"


def create_view_sql(
    table: TableSettings, datalake: DatalakeSettings, dialect: str, raw_ref: str | None = None
) -> str:
    """CREATE OR REPLACE VIEW of the typed view over the raw table."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    if table.edfi is not None and table.edfi.kind == "items":
        # Ed-Fi resources: the current state over every pull (see edfi_views).
        from panorama_elt.edfi_views import edfi_view_sql

        name = quote_name(table.datalake_table_name)
        qualifier = raw_ref[: -len(name)] if raw_ref and raw_ref.endswith(name) else ""
        return edfi_view_sql(table, datalake, dialect, qualifier)
    raw_ref = raw_ref or quote_name(table.datalake_table_name)
    # Partition values are encoded text in either format; Parquet file columns are typed.
    typed = {f.name for f in table.file_fields} if datalake.file_format == "parquet" else set()
    select = ",\n  ".join(
        f"{typed_column_sql(c.name, c.type, dialect) if c.name in typed else column_sql(c.name, c.type, dialect)}"
        f" AS {quote_name(c.name)}"
        for c in view_columns(table, datalake)
    )
    return (
        f"CREATE OR REPLACE VIEW {quote_name(table.datalake_table_view)} AS\n"
        f"SELECT\n  {select}\nFROM {raw_ref}"
    )
