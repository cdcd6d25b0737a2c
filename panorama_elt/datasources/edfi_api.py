"""Ed-Fi ODS/API datasource: every record of a resource, incrementally by change version.

One table per resource (its items), plus its ``/deletes`` (and ``/keyChanges`` when asked).
A run reads ``availableChangeVersions`` once; a full pull asks for everything up to the
newest change version, an incremental pull for ``[stored + 1, newest]`` in windows of
``change_version_step_size``. Each window is paged by offset in *reverse* (last page first):
a record updated or deleted during the pull leaves the window and shifts the later records
down one, which a reverse pager sees again (a duplicate) rather than skips (a gap, as forward
offset paging would have). Records created or updated during the pull are past the window's
upper bound and come with the next run. Pages stream into the writer one at a time.

HTTP is Python's urllib: the protocol needs GET and one form POST, and the retry, token
and error rules are ours to state exactly.
"""

from __future__ import annotations

import base64
import fnmatch
import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from email.message import Message
from typing import Any
from urllib.parse import urlencode, urlsplit

from panorama_elt.datasources.base import Datasource, Extraction
from panorama_elt.errors import SourceError, UsageError
from panorama_elt.settings import DatasourceSettings, EdfiSettings, EdfiTable, TableSettings

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


class EdfiClient:
    """Talks to one Ed-Fi API: token, root document, URLs, GETs with retries."""

    def __init__(self, settings: EdfiSettings, where: str) -> None:
        self.settings = settings
        self.where = where
        self.host = urlsplit(settings.base_url).netloc or settings.base_url
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic
        self._token: str | None = None
        self._refresh_at = 0.0
        self._info: dict[str, Any] | None = None
        self._down: str | None = None
        context = None
        if settings.base_url.startswith("https://") and not settings.verify_ssl:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        handlers: list[Any] = [urllib.request.HTTPSHandler(context=context)] if context else []
        self._opener = urllib.request.build_opener(*handlers)

    # Root document and URLs

    def info(self) -> dict[str, Any]:
        """The API's root (version) document, read once."""
        if self._info is None:
            _, _, body = self._send("GET", self.settings.base_url, auth=False)
            self._info = _json_object(body, f"{self.where}: the root document")
        return self._info

    @property
    def major(self) -> int:
        """The ODS/API major version (5, 6, 7...)."""
        version = str(self.info().get("version") or "")
        try:
            return int(version.split(".")[0])
        except ValueError:
            raise SourceError(
                f"{self.where}: {self.settings.base_url} is not an Ed-Fi API root "
                f"(no version in its root document)"
            ) from None

    def _locator(self) -> list[str]:
        """5.x / 6.x: year, or instance and year, after ``data/v3`` (and ``changeQueries/v1``)."""
        s = self.settings
        if s.mode == "year_specific":
            return [str(s.year)]
        if s.mode == "instance_year_specific":
            return [str(s.instance_code), str(s.year)]
        return []

    def _join(self, *segments: str) -> str:
        return "/".join([self.settings.base_url, *segments])

    def resource_url(self, table: EdfiTable) -> str:
        """The collection URL of a resource (or of its deletes / keyChanges)."""
        extra = [] if table.kind == "items" else [table.kind]
        if self.major >= 7:
            prefix = [*self._context7(), "data", "v3"]
        else:
            prefix = ["data", "v3", *self._locator()]
        return self._join(*prefix, table.namespace, table.resource, *extra)

    def _context7(self) -> list[str]:
        """7.x: tenant, then context (the year), before ``data/v3``."""
        s = self.settings
        return ([s.tenant_code] if s.tenant_code else []) + ([str(s.year)] if s.year else [])

    def change_versions_url(self) -> str:
        """Where ``availableChangeVersions`` is for this version and mode."""
        if self.major >= 7:
            return self._join(*self._context7(), "changeQueries", "v1", "availableChangeVersions")
        return self._join("changeQueries", "v1", *self._locator(), "availableChangeVersions")

    def oauth_url(self) -> str:
        """The token endpoint: the setting, else the root document's, else the usual place."""
        if self.settings.oauth_url:
            return self.settings.oauth_url
        url = (self.info().get("urls") or {}).get("oauth")
        if isinstance(url, str) and url:
            return url
        if self.settings.mode == "instance_year_specific":
            return self._join(str(self.settings.instance_code), "oauth", "token")
        return self._join("oauth", "token")

    # Token

    def token(self) -> str:
        """A bearer token, fetched again shortly before it expires."""
        if self._token is None or self.clock() >= self._refresh_at:
            self._fetch_token()
        assert self._token is not None
        return self._token

    def _fetch_token(self) -> None:
        s = self.settings
        pair = f"{s.client_id}:{s.client_secret}".encode()
        headers = {
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        url = self.oauth_url()
        status, _, body = self._send(
            "POST", url, data=b"grant_type=client_credentials", headers=headers, auth=False
        )
        if status in (400, 401, 403):
            raise SourceError(
                f"{self.where}: the token endpoint {_public(url)} refused the credentials "
                f"(HTTP {status}): check client_id and client_secret"
            )
        if status != 200:
            raise SourceError(
                f"{self.where}: token request to {_public(url)} failed: HTTP {status}"
            )
        payload = _json_object(body, f"{self.where}: the token answer")
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise SourceError(
                f"{self.where}: the token answer of {_public(url)} has no access_token"
            )
        expires = float(payload.get("expires_in") or 3600)
        self._token = token
        # Well before expiry: 2 minutes early, or half-way through a short-lived token.
        margin = 120.0 if expires > 240 else expires / 2
        self._refresh_at = self.clock() + expires - margin

    # Requests

    def get(self, url: str, params: dict[str, Any]) -> tuple[Any, Message]:
        """GET JSON with the token; 401 refreshes the token once; failures are one line."""
        full = f"{url}?{urlencode(params)}" if params else url
        status, headers, body = self._send("GET", full)
        if status == 401:
            self._token = None
            status, headers, body = self._send("GET", full)
        if status != 200:
            raise EdfiHttpError(status, _message(body), _public(full))
        try:
            return json.loads(body), headers
        except ValueError:
            raise SourceError(f"{self.where}: {_public(full)} did not answer JSON") from None

    def _send(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Message, bytes]:
        """One request, retried on connection errors and retry statuses (GETs only).

        Once the host could not be reached after every retry, later requests of this run fail
        at once with the same line, rather than waiting through the retries again per table.
        """
        if self._down is not None:
            raise SourceError(self._down)
        s = self.settings
        attempts = s.num_retries + 1 if method == "GET" else 1
        for attempt in range(attempts):
            request = urllib.request.Request(url, data=data, method=method)
            for name, value in (headers or {}).items():
                request.add_header(name, value)
            if auth:
                request.add_header("Authorization", f"Bearer {self.token()}")
            request.add_header("Accept", "application/json")
            last = attempt == attempts - 1
            try:
                with self._opener.open(request, timeout=s.timeout) as response:
                    return response.status, response.headers, response.read()
            except urllib.error.HTTPError as exc:
                body = exc.read()
                exc.close()
                if exc.code not in s.retry_statuses or last:
                    return exc.code, exc.headers, body
                after = _retry_after(exc.headers)
                wait = after if after is not None else s.backoff_factor * 2**attempt
                log.info(
                    "%s: HTTP %s from %s; retrying in %.1fs", self.where, exc.code, self.host, wait
                )
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if last:
                    reason = getattr(exc, "reason", None) or exc
                    self._down = f"{self.where}: cannot reach {self.host}: {_reason(reason)}"
                    raise SourceError(self._down) from None
                wait = s.backoff_factor * 2**attempt
                log.info(
                    "%s: %s from %s; retrying in %.1fs", self.where, _reason(exc), self.host, wait
                )
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def change_versions(self) -> tuple[int, int] | None:
        """(oldest, newest) available change versions, or None without change queries."""
        try:
            body, _ = self.get(self.change_versions_url(), {})
        except EdfiHttpError as exc:
            if exc.status == 404:
                return None
            raise SourceError(f"{self.where}: {exc}") from None
        # 5.3 answers OldestChangeVersion / NewestChangeVersion, 6.0+ camelCase.
        lower = (
            {str(k).lower(): v for k, v in (body or {}).items()} if isinstance(body, dict) else {}
        )
        try:
            return int(lower.get("oldestchangeversion", 0)), int(lower["newestchangeversion"])
        except (KeyError, TypeError, ValueError):
            raise SourceError(
                f"{self.where}: availableChangeVersions has no newestChangeVersion"
            ) from None


class EdfiHttpError(Exception):
    """A non-200 answer to a GET, after retries."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(f"{url} answered HTTP {status}" + (f": {message}" if message else ""))
        self.status = status


class EdfiDatasource(Datasource):
    """Pulls Ed-Fi resources, their deletes and key changes into the lake."""

    def __init__(self, settings: DatasourceSettings) -> None:
        super().__init__(settings)
        if settings.edfi is None:
            raise SourceError(f"datasource {settings.name}: no Ed-Fi settings")
        self.edfi = settings.edfi
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
                return Extraction(groups=iter(()), batches=iter(()), full=False)
            return Extraction(
                groups=iter(()), batches=self._batches(table, [(None, None)], 0), full=True
            )
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
            groups=iter(()),
            batches=self._batches(table, windows, newest),
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
            raise SourceError(f"{table.name}: {_public(url)} did not answer a list of records")
        return body, headers

    def _reverse_pages(
        self, table: TableSettings, url: str, params: dict[str, Any], limit: int
    ) -> Iterator[list[Any]]:
        _, headers = self._page(table, url, {**params, "limit": 0, "totalCount": "true"})
        total = headers.get("Total-Count")
        if total is None or not str(total).isdigit():
            raise SourceError(f"{table.name}: {_public(url)} sent no Total-Count header")
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


def _retry_after(headers: Message) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _message(body: bytes) -> str:
    """The API's error message, on one line and short."""
    try:
        data = json.loads(body)
    except ValueError:
        data = body.decode("utf-8", "replace")
    if isinstance(data, dict):
        data = data.get("message") or data.get("detail") or data.get("error") or ""
    return " ".join(str(data).split())[:200]


def _public(url: str) -> str:
    """A URL without its query string (which may carry filters, never secrets, but is long)."""
    return url.split("?", 1)[0]


def _reason(exc: object) -> str:
    text = str(getattr(exc, "strerror", None) or exc)
    return " ".join(text.split()) or type(exc).__name__


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise SourceError(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise SourceError(f"{what} is not a JSON object")
    return data
