"""The current-state view of an Ed-Fi resource, in the Athena (Trino) and DuckDB dialects.

The raw table holds one row per record per pull. The view keeps, per installation, tenant
and year: the latest version of each ``id`` (newest pull, then newest ``_lastModifiedDate``),
minus the ids ``/deletes`` reported, and then the latest record per identity (a record
deleted and re-created with the same natural key inside one change window is not always
reported as deleted). Its columns: ``id``, the resource's identity and top-level scalar
properties typed from its schema (panorama_elt.edfi_schema), ``doc``, then the partitions.
"""

from __future__ import annotations

from panorama_elt.edfi_schema import VIEW_TYPES, Property, identity, resource_properties
from panorama_elt.settings import DatalakeSettings, TableSettings
from panorama_elt.views import column_sql, quote_name


def json_text(doc: str, path: tuple[str, ...], dialect: str) -> str:
    """The text of one scalar inside the JSON ``doc`` expression (NULL when absent)."""
    if not all(step.replace("_", "").isalnum() for step in path):
        raise ValueError(f"unsafe JSON path {path!r}")
    json_path = "'$." + ".".join(path) + "'"
    function = "json_extract_scalar" if dialect == "athena" else "json_extract_string"
    return f"{function}({doc}, {json_path})"


def typed(prop: Property, doc: str, dialect: str) -> str:
    """A property's value in its view type."""
    text = json_text(doc, prop.path, dialect)
    view_type = VIEW_TYPES[prop.type]
    if prop.type == "string":
        return text
    if prop.type == "date-time":
        # Ed-Fi writes UTC as ...T12:34:56.123456Z; both engines read 'YYYY-MM-DD hh:mm:ss.ffffff'.
        target = "TIMESTAMP(6)" if dialect == "athena" else "TIMESTAMP"
        return f"CAST(replace(replace({text}, 'T', ' '), 'Z', '') AS {target})"
    return f"CAST({text} AS {view_type})"


def edfi_view_sql(
    table: TableSettings, datalake: DatalakeSettings, dialect: str, qualifier: str = ""
) -> str:
    """CREATE OR REPLACE VIEW of a resource's current state; ``qualifier`` prefixes raw tables."""
    spec = table.edfi
    assert spec is not None and spec.kind == "items"
    groups = [bp.name for bp in datalake.base_partitions] + [
        p for p in table.partition_fields if p != "pull"
    ]
    types = {bp.name: bp.type for bp in datalake.base_partitions}
    types.update({f.name: f.type for f in table.fields})
    keys = [quote_name(g) for g in groups]
    doc, item_id = quote_name("doc"), quote_name("id")
    by_id = ", ".join([*keys, item_id])

    def decoded(columns: list[str]) -> str:
        return ", ".join(f"{column_sql(c, types[c], dialect)} AS {quote_name(c)}" for c in columns)

    newest_first = (
        f"{quote_name('pull')} DESC, {json_text(doc, ('_lastModifiedDate',), dialect)} DESC"
    )
    identity_props = identity(spec.namespace, spec.resource)
    by_identity = keys + [json_text(doc, p.path, dialect) for p in identity_props]
    ctes = [
        f"pulled AS (SELECT {decoded([*groups, 'pull', 'id', 'doc'])} "
        f"FROM {qualifier}{quote_name(table.datalake_table_name)})",
        f"latest AS (SELECT r.*, row_number() OVER (PARTITION BY {by_id} "
        f"ORDER BY {newest_first}) AS id_rank FROM pulled r)",
    ]
    live = "SELECT l.* FROM latest l WHERE l.id_rank = 1"
    if spec.deletes_table:
        ctes.append(
            f"gone AS (SELECT {decoded([*groups, 'id'])} "
            f"FROM {qualifier}{quote_name(spec.deletes_table)})"
        )
        same = " AND ".join(f"g.{k} = l.{k}" for k in [*keys, item_id])
        live += f" AND NOT EXISTS (SELECT 1 FROM gone g WHERE {same})"
    if identity_props:
        ctes.append(
            f"live AS (SELECT k.*, row_number() OVER (PARTITION BY {', '.join(by_identity)} "
            f"ORDER BY {newest_first}) AS key_rank FROM ({live}) k)"
        )
        final = "FROM live WHERE key_rank = 1"
    else:
        ctes.append(f"live AS ({live})")
        final = "FROM live"
    columns = ",\n  ".join(
        [item_id]
        + [
            f"{typed(p, doc, dialect)} AS {quote_name(p.column)}"
            for p in resource_properties(spec.namespace, spec.resource)
        ]
        + [doc, *keys, quote_name("pull")]
    )
    with_clause = ",\n".join(ctes)
    return (
        f"CREATE OR REPLACE VIEW {quote_name(table.datalake_table_view)} AS\n"
        f"WITH {with_clause}\nSELECT\n  {columns}\n{final}"
    )
