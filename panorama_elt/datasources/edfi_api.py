"""Ed-Fi ODS/API datasource: every record of a resource, incrementally by change version.

One table per resource (its items), plus its ``/deletes`` (and ``/keyChanges`` when asked).
A run reads ``availableChangeVersions`` once; a full pull asks for everything up to the
newest change version, an incremental pull for ``[stored + 1, newest]`` in windows of
``change_version_step_size``. Each window is paged by offset in *reverse* (last page first):
a record updated or deleted during the pull leaves the window and shifts the later records
down one, which a reverse pager sees again (a duplicate) rather than skips (a gap, as forward
offset paging would have). Records created or updated during the pull are past the window's
upper bound and come with the next run. Pages stream into the writer one at a time.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Iterator, Sequence
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from panorama_elt.datasources.base import Datasource, Extraction
from panorama_elt.datasources.edfi_client import EdfiClient, EdfiHttpError, public_url
from panorama_elt.datasources.edfi_settings import EdfiSettings
from panorama_elt.errors import SourceError, UsageError
from panorama_elt.settings import DatasourceSettings, TableSettings

log = logging.getLogger("panorama_elt")

Window = tuple[int | None, int | None]


def change_windows(first: int, last: int, step: int) -> list[Window]:
    """``[first, last]`` cut into inclusive windows of at most ``step`` change versions."""
    return [(low, min(low + step - 1, last)) for low in range(first, last + 1, step)]


def reverse_offsets(total: int, limit: int) -> list[int]:
    """Offsets of every page of ``total`` records, last page first."""
    return list(range(((total - 1) // limit) * limit, -1, -limit)) if total > 0 else []


def normalize_id(value: Any) -> str:
    """Ids compare without hyphens and case (versions differ in how they print GUIDs)."""
    return str(value).replace("-", "").lower()


def compact(record: Any) -> str:
    """A record's JSON, compact, keys in the order the API sent them."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class EdfiDatasource(Datasource):
    """Pulls Ed-Fi resources, their deletes and key changes into the lake."""

    def __init__(self, settings: DatasourceSettings) -> None:
        super().__init__(settings)
        edfi = settings.block(EdfiSettings)
        if edfi is None:
            raise SourceError(f"datasource {settings.name}: no Ed-Fi settings")
        self.edfi = edfi
        self.where = f"datasource {settings.name} ({urlsplit(self.edfi.base_url).netloc})"
        self.client = EdfiClient(self.edfi, self.where)
        self._versions: tuple[int, int] | None = None
        self._versions_read = False

    def versions(self) -> tuple[int, int] | None:
        """availableChangeVersions, read once per run (None: the API has no change queries)."""
        if not self._versions_read:
            self._versions = self.client.change_versions()
            self._versions_read = True
            if self._versions is None:
                log.warning(
                    "%s: the API has no change queries (availableChangeVersions: 404): every "
                    "table is pulled in full, and deletes cannot be tracked",
                    self.where,
                )
        return self._versions

    def test_connection(self) -> str:
        info = self.client.info()
        major = self.client.major
        self.client.token()
        versions = self.versions()
        models = ", ".join(
            f"{m.get('name')} {m.get('version')}"
            for m in info.get("dataModels") or []
            if isinstance(m, dict)
        )
        changes = (
            f"change versions {versions[0]}..{versions[1]}" if versions else "no change queries"
        )
        return (
            f"Ed-Fi ODS/API {info.get('version')} (v{major}) at {self.edfi.base_url}"
            f"{f' ({models})' if models else ''}, token ok, {changes}"
        )

    def extract(self, table: TableSettings, *, force: bool, mark: str | None) -> Extraction:
        spec = table.edfi
        if spec is None:
            raise SourceError(f"{table.name}: not an Ed-Fi table")
        versions = self.versions()
        if versions is None:
            if spec.kind != "items":
                return Extraction(iter(()), full=False)
            return Extraction(self._batches(table, [(None, None)], 0), full=True)
        oldest, newest = versions
        if mark is None or force:
            windows: list[Window] = [(None, newest)]
            full = True
        else:
            stored = _mark_number(table, mark)
            if stored > newest:
                raise SourceError(
                    f"{table.name}: the stored change version {stored} is newer than the API's "
                    f"newest ({newest}): the ODS was restored or replaced; run with --force"
                )
            if stored + 1 < oldest:
                raise SourceError(
                    f"{table.name}: the stored change version {stored} is older than the API's "
                    f"oldest available ({oldest}): changes in between are gone; run with --force"
                )
            windows = change_windows(stored + 1, newest, self.edfi.change_version_step_size)
            full = False
        return Extraction(
            self._batches(table, windows, newest),
            full=full,
            mark=str(newest),
        )

    def _batches(
        self, table: TableSettings, windows: Sequence[Window], pull: int
    ) -> Iterator[list[list[Any]]]:
        """Rows of every window, a page at a time: partition values, id, (change_version,) doc."""
        spec = table.edfi
        assert spec is not None
        client = self.client
        url = client.resource_url(spec)
        limit = spec.page_size or self.edfi.page_size
        parts: list[Any] = [self.edfi.tenant_code] if self.edfi.tenant_code else []
        parts += [str(self.edfi.api_year)] if self.edfi.api_year else []
        parts.append(str(pull))
        for low, high in windows:
            params: dict[str, Any] = dict(spec.query_parameters)
            if low is not None:
                params["minChangeVersion"] = low
            if high is not None:
                params["maxChangeVersion"] = high
            pages = (
                self._reverse_pages(table, url, params, limit)
                if spec.kind == "items"
                else self._forward_pages(table, url, params, limit)
            )
            for page in pages:
                if spec.kind == "items":
                    yield [[*parts, normalize_id(r.get("id")), compact(r)] for r in page]
                else:
                    yield [
                        [*parts, normalize_id(r.get("id")), str(r.get("changeVersion")), compact(r)]
                        for r in page
                    ]

    def _page(
        self, table: TableSettings, url: str, params: dict[str, Any]
    ) -> tuple[list[Any], Message]:
        try:
            body, headers = self.client.get(url, params)
        except EdfiHttpError as exc:
            raise SourceError(f"{table.name}: {exc}{_hint(exc.status, table)}") from None
        if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
            raise SourceError(f"{table.name}: {public_url(url)} did not answer a list of records")
        return body, headers

    def _reverse_pages(
        self, table: TableSettings, url: str, params: dict[str, Any], limit: int
    ) -> Iterator[list[Any]]:
        _, headers = self._page(table, url, {**params, "limit": 0, "totalCount": "true"})
        total = headers.get("Total-Count")
        if total is None or not str(total).isdigit():
            raise SourceError(f"{table.name}: {public_url(url)} sent no Total-Count header")
        for offset in reverse_offsets(int(total), limit):
            yield self._page(table, url, {**params, "offset": offset, "limit": limit})[0]

    def _forward_pages(
        self, table: TableSettings, url: str, params: dict[str, Any], limit: int
    ) -> Iterator[list[Any]]:
        # Deletes and key changes only grow, and only past the window's upper bound: forward
        # paging cannot skip one (and 5.3's /deletes has no Total-Count to page backwards).
        offset = 0
        while True:
            page = self._page(table, url, {**params, "offset": offset, "limit": limit})[0]
            if page:
                yield page
            if len(page) < limit:
                return
            offset += limit

    def select_resources(self, patterns: Sequence[str]) -> list[str]:
        """Resources of the ``ed-fi`` namespace matching lightbeam-style wildcards
        (``student*``, ``*Descriptors``), in the API's dependency order."""
        url = (self.client.info().get("urls") or {}).get("dependencies")
        if not isinstance(url, str) or not url:
            raise SourceError(f"{self.where}: the root document names no dependencies URL")
        try:
            body, _ = self.client.get(url, {})
        except EdfiHttpError as exc:
            raise SourceError(f"{self.where}: {exc}") from None
        entries = sorted(
            (e for e in body if isinstance(e, dict)) if isinstance(body, list) else [],
            key=lambda e: e.get("order", 0),
        )
        known = [
            str(e["resource"]).removeprefix("/ed-fi/")
            for e in entries
            if str(e.get("resource", "")).startswith("/ed-fi/")
        ]
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(k, p) for k in known)]
        if unmatched:
            raise UsageError(
                f"--tables: no resource of {self.edfi.base_url} matches {', '.join(unmatched)}"
            )
        return [k for k in dict.fromkeys(known) if any(fnmatch.fnmatchcase(k, p) for p in patterns)]

    def describe(self, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        raise SourceError(
            f"{self.where}: Ed-Fi tables have fixed columns (id, doc): nothing to set"
        )


def _mark_number(table: TableSettings, mark: str) -> int:
    try:
        return int(mark)
    except ValueError:
        raise SourceError(
            f"{table.name}: the stored mark {mark!r} is not a change version; run with --force"
        ) from None


def _hint(status: int, table: TableSettings) -> str:
    spec = table.edfi
    assert spec is not None
    if status == 403:
        return (
            f" (the API client's claim set does not cover {spec.namespace}/{spec.resource}: "
            "ask the ODS administrator to grant it, or remove the table)"
        )
    if status == 404 and spec.kind == "keyChanges":
        return " (ODS/API 5.x has no /keyChanges: set get_key_changes: false)"
    if status == 404:
        return (
            f" ({spec.namespace}/{spec.resource} is not in this API's data model: check the "
            "name and namespace, or remove the table)"
        )
    return ""
