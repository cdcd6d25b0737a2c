"""Settings of the edfi_api datasource: connection and paging, and its per-resource tables.

Imports no HTTP code: the registry in ``datasources/__init__.py`` declares these, and settings
validation reads them without loading the datasource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from panorama_elt.column_types import parse_column_type
from panorama_elt.edfi_schema import snake_case
from panorama_elt.plugins import SettingsBlock, TablesContext
from panorama_elt.settings_check import Checker, join, kind_of

if TYPE_CHECKING:
    from panorama_elt.settings import FieldSettings, TableSettings

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


def parse_edfi(check: Checker, d: Mapping[str, Any], path: str) -> EdfiSettings:
    """The connection and paging settings of an edfi_api datasource."""
    base_url = (check.text(d, "base_url", path, required=True) or "").rstrip("/")
    if base_url and not base_url.startswith(("http://", "https://")):
        check.fail(join(path, "base_url"), f"{base_url!r} is not an http(s) URL")
    mode = check.text(d, "mode", path) or "shared_instance"
    if mode not in EDFI_MODES:
        check.fail(join(path, "mode"), f"unknown mode {mode!r} (valid: {', '.join(EDFI_MODES)})")
    year = check.integer(d, "year", path, 0, 1900, 9999) or None
    instance = check.text(d, "instance_code", path)
    if mode in ("year_specific", "instance_year_specific") and year is None:
        check.fail(join(path, "year"), f"is required in mode {mode}")
    if mode == "instance_year_specific" and instance is None:
        check.fail(join(path, "instance_code"), f"is required in mode {mode}")
    statuses = d.get("retry_statuses")
    retry: tuple[int, ...] = EdfiSettings.retry_statuses
    if statuses not in (None, ""):
        if not isinstance(statuses, list) or not all(
            isinstance(c, int) and 400 <= c <= 599 for c in statuses
        ):
            check.fail(join(path, "retry_statuses"), "must be a list of HTTP status codes")
        else:
            retry = tuple(statuses)
    backoff = d.get("backoff_factor")
    if backoff in (None, ""):
        backoff = 1.5
    elif isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
        check.fail(join(path, "backoff_factor"), f"must be a number >= 0, got {backoff!r}")
        backoff = 1.5
    edfi = EdfiSettings(
        base_url=base_url,
        client_id=check.text(d, "client_id", path, required=True),
        client_secret=check.text(d, "client_secret", path, required=True),
        oauth_url=check.text(d, "oauth_url", path),
        mode=mode,
        year=year,
        instance_code=instance,
        tenant_code=check.text(d, "tenant_code", path),
        api_year=check.integer(d, "api_year", path, 0, 1900, 9999) or year,
        page_size=check.integer(d, "page_size", path, 500, 1, 500),
        change_version_step_size=check.integer(
            d, "change_version_step_size", path, 50000, 1, 2**62
        ),
        num_retries=check.integer(d, "num_retries", path, 5, 0, 100),
        backoff_factor=float(backoff),
        retry_statuses=retry,
        timeout=float(check.integer(d, "timeout", path, 60, 1, 3600)),
        verify_ssl=check.boolean(d, "verify_ssl", path, True),
        fetch_deletes=check.boolean(d, "fetch_deletes", path, True),
        get_key_changes=check.boolean(d, "get_key_changes", path, False),
        path=path,
    )
    return edfi


def edfi_tables(
    check: Checker, data: Any, path: str, blocks: tuple[Any, ...], context: TablesContext
) -> tuple[TableSettings, ...]:
    """One entry per resource or descriptor; each gives its items table, and its deletes and
    key changes tables when those are pulled."""
    edfi = next((b for b in blocks if isinstance(b, EdfiSettings)), None)
    if edfi is None:
        return ()
    datasource, datalake = context.datasource, context.datalake
    if data is None:
        return ()
    if not isinstance(data, list):
        check.fail(path, f"must be a list of resources (each '- name: ...'), got {kind_of(data)}")
        return ()
    result: list[TableSettings] = []
    for i, raw in enumerate(data):
        p = f"{path}[{i}]"
        if isinstance(raw, str):
            raw = {"name": raw}
        d = check.mapping(raw, p, _EDFI_TABLE_KEYS, "resource settings")
        if d is None:
            continue
        resource = check.text(d, "name", p, required=True)
        namespace = check.text(d, "namespace", p) or "ed-fi"
        if resource is None:
            continue
        if not _EDFI_RESOURCE.match(resource):
            check.fail(
                join(p, "name"),
                f"{resource!r} is not an Ed-Fi resource name (camelCase, e.g. studentSchoolAssociations)",
            )
            continue
        if not _EDFI_NAMESPACE.match(namespace):
            check.fail(
                join(p, "namespace"),
                f"{namespace!r} is not an Ed-Fi namespace (e.g. ed-fi, tpdm)",
            )
            continue
        params = d.get("query_parameters") or {}
        if not isinstance(params, dict) or not all(
            isinstance(v, (str, int, bool)) for v in params.values()
        ):
            check.fail(join(p, "query_parameters"), "must be a mapping of parameter: value")
            params = {}
        paging = sorted(set(params) & set(_EDFI_PAGING))
        if paging:
            check.fail(
                join(p, "query_parameters"),
                f"cannot set {', '.join(paging)} (the extraction pages and windows itself)",
            )
            params = {}
        snake = snake_case(resource)
        result += _resource_tables(
            check,
            d,
            p,
            EdfiTable(
                resource=resource,
                namespace=namespace,
                query_parameters=tuple((k, _query_text(v)) for k, v in params.items()),
                page_size=check.integer(d, "page_size", p, 0, 1, 500) or None,
            ),
            snake if namespace == "ed-fi" else f"{namespace.replace('-', '_')}_{snake}",
            datasource,
            edfi,
            f"{datalake.base_prefix}_" if datalake and datalake.base_prefix else "",
        )
    seen: set[str] = set()
    for table in result:
        if table.name in seen:
            check.fail(join(table.path, "name"), f"duplicate table name {table.name!r}")
        seen.add(table.name)
    return tuple(result)


def _resource_tables(
    check: Checker,
    d: Mapping,
    path: str,
    spec: EdfiTable,
    name: str,
    datasource: str,
    edfi: EdfiSettings,
    prefix: str,
) -> list[TableSettings]:
    """A resource's items table, then its deletes and key changes tables when pulled."""
    from panorama_elt.settings import PartitionSettings, TableSettings  # (imports this module)

    kinds = ["items"]
    if not spec.resource.endswith("Descriptors"):  # descriptors have no change tracking
        kinds += ["deletes"] if edfi.fetch_deletes else []
        kinds += ["keyChanges"] if edfi.get_key_changes else []
    suffix = {"items": "", "deletes": "_deletes", "keyChanges": "_key_changes"}
    raw_names = {k: f"{prefix}raw_{name}{suffix[k]}" for k in kinds}
    raw_names["items"] = (
        check.identifier(d, "datalake_table_name", path) or raw_names["items"]
    ).lower()
    items_view = check.identifier(d, "datalake_table_view", path) or f"{prefix}table_{name}"
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
    from panorama_elt.settings import FieldSettings  # settings.py imports this module

    names = (*_edfi_partitions(edfi), "id", *changes, "doc")
    return tuple(FieldSettings(n, parse_column_type(_EDFI_TYPES[n])) for n in names)


def _query_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


EDFI = SettingsBlock(_EDFI_KEYS, parse_edfi)
