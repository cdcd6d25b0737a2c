"""A loopback Ed-Fi ODS/API emulator: a real HTTP server for tests and trials.

It speaks the parts of the protocol an extracting or loading client uses, in the shapes of
ODS/API 5.3, 6.x and 7.x: the root (version) document, OAuth2 client credentials (HTTP Basic,
form or JSON body; short-lived tokens), dependencies, resources and descriptors with POST
(upsert by identity), PUT (a changed identity is a key change), DELETE, GET with
limit/offset, ``totalCount`` and change-version windows, ``availableChangeVersions``,
``/deletes`` and ``/keyChanges``. Fault hooks make it throttle (429 with Retry-After), fail
(500), reset a connection in the middle of a body, refuse a resource (403), forget old
change versions, or run a write between two page requests.

Run it by hand: ``python -m panorama_elt.synthetic.edfi_api --port 8765`` (loads the synthetic
dataset; client id ``panorama``, secret ``panorama-secret``).
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from panorama_elt.edfi_schema import identity
from panorama_elt.synthetic import edfi_data

MAX_LIMIT = 500
DEFAULT_LIMIT = 25
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class HttpError(Exception):
    """An error answer: status and Ed-Fi style JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.body = body or {"message": message}


@dataclass
class Record:
    """One stored resource item."""

    id: str
    body: dict[str, Any]
    change_version: int
    modified: datetime


@dataclass
class Fault:
    """A scripted misbehaviour for requests whose path contains ``path``."""

    path: str
    status: int = 500
    times: int = 1
    retry_after: int | None = None
    reset: bool = False


@dataclass
class Flavor:
    """What differs between ODS/API versions."""

    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def pascal_change_versions(self) -> bool:
        return self.version.startswith("5.")

    @property
    def deletes_have_keys(self) -> bool:
        return not self.version.startswith("5.")

    @property
    def deletes_count(self) -> bool:
        return not self.version.startswith("5.")

    @property
    def key_changes(self) -> bool:
        return self.major >= 6

    @property
    def cursor_paging(self) -> bool:
        return tuple(int(p) for p in self.version.split(".")[:2]) >= (7, 3)


@dataclass
class Store:
    """Every resource's records, the change-version sequence and the tracked changes."""

    records: dict[str, dict[str, Record]] = field(default_factory=dict)
    deletes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    key_changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    change_version: int = 0
    oldest: int = 0


class EdfiEmulator:
    """The emulated API; ``start()`` serves it on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        *,
        version: str = "6.1",
        client_id: str = "panorama",
        client_secret: str = "panorama-secret",
        mode: str = "shared_instance",
        year: int | None = None,
        instance_code: str | None = None,
        tenant_code: str | None = None,
        token_seconds: int = 1800,
        change_queries: bool = True,
    ) -> None:
        self.flavor = Flavor(version)
        self.client_id = client_id
        self.client_secret = client_secret
        self.mode = mode
        self.year = year
        self.instance_code = instance_code
        self.tenant_code = tenant_code
        self.token_seconds = token_seconds
        self.change_queries = change_queries
        self.store = Store()
        self.lock = threading.RLock()
        self.tokens: dict[str, float] = {}
        self.faults: list[Fault] = []
        self.forbidden: set[str] = set()
        self.page_hooks: list[Callable[[str, int], None]] = []
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Serving

    def start(self, port: int = 0) -> EdfiEmulator:
        """Listen on 127.0.0.1 (``port`` 0: any free port) and serve in a daemon thread."""
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> EdfiEmulator:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API root (what clients call ``base_url``)."""
        assert self._server is not None, "start() the emulator first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # URL shapes

    def _locator(self) -> list[str]:
        """Year / instance segments of 5.x and 6.x (after ``data/v3``)."""
        if self.mode == "year_specific":
            return [str(self.year)]
        if self.mode == "instance_year_specific":
            return [str(self.instance_code), str(self.year)]
        return []

    def _context(self) -> list[str]:
        """Tenant / context segments of 7.x (before ``data/v3``)."""
        segments = [self.tenant_code] if self.tenant_code else []
        return segments + ([str(self.year)] if self.year is not None else [])

    def data_prefix(self) -> list[str]:
        """Path segments before ``{namespace}/{resource}``."""
        if self.flavor.major >= 7:
            return [*self._context(), "data", "v3"]
        return ["data", "v3", *self._locator()]

    def change_queries_prefix(self) -> list[str]:
        """Path segments before ``availableChangeVersions``."""
        if self.flavor.major >= 7:
            return [*self._context(), "changeQueries", "v1"]
        return ["changeQueries", "v1", *self._locator()]

    def oauth_path(self) -> list[str]:
        """Path segments of the token endpoint."""
        if self.flavor.major >= 7 and self.tenant_code:
            return [self.tenant_code, "oauth", "token"]
        if self.mode == "instance_year_specific":
            return [str(self.instance_code), "oauth", "token"]
        return ["oauth", "token"]

    def root_document(self) -> dict[str, Any]:
        """The version document at the API root."""
        base = self.url
        data = "/".join([base, *self.data_prefix()]) + "/"
        doc: dict[str, Any] = {
            "version": self.flavor.version,
            "informationalVersion": self.flavor.version,
            "suite": "3",
            "build": f"{self.flavor.version}.0.0",
            "apiMode": self.mode.replace("_", " ").title(),
            "dataModels": [{"name": "Ed-Fi", "version": "5.0.0"}],
            "urls": {
                "dependencies": f"{base}/metadata/data/v3/dependencies",
                "openApiMetadata": f"{base}/metadata/",
                "oauth": "/".join([base, *self.oauth_path()]),
                "dataManagementApi": data,
                "xsdMetadata": f"{base}/metadata/xsd",
                "changeQueries": "/".join([base, *self.change_queries_prefix()]) + "/",
            },
        }
        if self.flavor.cursor_paging:
            del doc["apiMode"]  # 7.3 dropped it; its urls carry tenant and context
        return doc

    # Store operations (also used by tests to script changes)

    def load(self, data: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """POST every body of a dataset (default: the synthetic one) directly into the store."""
        for resource, bodies in (data or edfi_data.generate()).items():
            for body in bodies:
                self.upsert("ed-fi", resource, body)

    def _next_version(self) -> int:
        self.store.change_version += 1
        return self.store.change_version

    def _key(self, namespace: str, resource: str, body: dict[str, Any]) -> tuple[Any, ...]:
        props = identity(namespace, resource)
        if not props:
            return (json.dumps(body, sort_keys=True),)
        values = []
        for p in props:
            value: Any = body
            for step in p.path:
                value = value.get(step) if isinstance(value, dict) else None
            if value is None:
                raise HttpError(400, f"The request is invalid: {'.'.join(p.path)} is required.")
            values.append(value)
        return tuple(values)

    def _key_values(self, namespace: str, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        props = identity(namespace, resource)
        return dict(
            zip((p.path[-1] for p in props), self._key(namespace, resource, body), strict=False)
        )

    def upsert(self, namespace: str, resource: str, body: dict[str, Any]) -> tuple[int, Record]:
        """POST semantics: create (201) or update the item with the same identity (200)."""
        body = {
            k: v for k, v in body.items() if k not in ("id", "_etag", "_lastModifiedDate", "link")
        }
        with self.lock:
            items = self.store.records.setdefault(f"{namespace}/{resource}", {})
            key = self._key(namespace, resource, body)
            for record in items.values():
                if self._key(namespace, resource, record.body) == key:
                    if record.body != body:
                        record.body = body
                        self._touch(record)
                    return 200, record
            record = Record(uuid.uuid4().hex, body, 0, _EPOCH)
            self._touch(record)
            items[record.id] = record
            if self.flavor.cursor_paging:
                # 7.3: re-creating a deleted natural key drops its /deletes entry.
                keys = self._key_values(namespace, resource, body)
                log = self.store.deletes.get(f"{namespace}/{resource}", [])
                log[:] = [e for e in log if e.get("keyValues") != keys]
            return 201, record

    def _touch(self, record: Record) -> None:
        record.change_version = self._next_version()
        # A deterministic clock: one second per change.
        record.modified = _EPOCH + timedelta(seconds=record.change_version)

    def replace(self, namespace: str, resource: str, item_id: str, body: dict[str, Any]) -> None:
        """PUT semantics; a new identity is recorded as a key change."""
        body = {
            k: v for k, v in body.items() if k not in ("id", "_etag", "_lastModifiedDate", "link")
        }
        with self.lock:
            record = self._find(namespace, resource, item_id)
            old = self._key_values(namespace, resource, record.body)
            new = self._key_values(namespace, resource, body)
            record.body = body
            self._touch(record)
            if old != new:
                self.store.key_changes.setdefault(f"{namespace}/{resource}", []).append(
                    {
                        "id": record.id,
                        "changeVersion": record.change_version,
                        "oldKeyValues": old,
                        "newKeyValues": new,
                    }
                )

    def delete(self, namespace: str, resource: str, item_id: str) -> None:
        """DELETE semantics: the item goes, and ``/deletes`` reports it."""
        with self.lock:
            record = self._find(namespace, resource, item_id)
            del self.store.records[f"{namespace}/{resource}"][record.id]
            entry: dict[str, Any] = {"id": record.id, "changeVersion": self._next_version()}
            if self.flavor.deletes_have_keys:
                entry["keyValues"] = self._key_values(namespace, resource, record.body)
            self.store.deletes.setdefault(f"{namespace}/{resource}", []).append(entry)

    def _find(self, namespace: str, resource: str, item_id: str) -> Record:
        items = self.store.records.get(f"{namespace}/{resource}", {})
        record = items.get(item_id.replace("-", "").lower())
        if record is None:
            raise HttpError(404, f"Resource {resource} with id {item_id} was not found.")
        return record

    def items(self, resource: str, namespace: str = "ed-fi") -> list[dict[str, Any]]:
        """Every item of a resource as GET returns it, in id order."""
        with self.lock:
            items = self.store.records.get(f"{namespace}/{resource}", {})
            return [self.render(items[i]) for i in sorted(items)]

    def render(self, record: Record) -> dict[str, Any]:
        """A record as the API returns it."""
        return {
            "id": record.id,
            **record.body,
            "_etag": str(5249000000000000000 + record.change_version),
            "_lastModifiedDate": record.modified.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    def purge(self, oldest: int) -> None:
        """Forget change history older than ``oldest`` (as an ODS that keeps a window does)."""
        with self.lock:
            self.store.oldest = oldest

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (clients then get 401)."""
        with self.lock:
            self.tokens.clear()

    def fail(
        self,
        path: str,
        status: int = 500,
        times: int = 1,
        retry_after: int | None = None,
        reset: bool = False,
    ) -> None:
        """Answer the next ``times`` requests whose path contains ``path`` with ``status``
        (or, with ``reset``, cut the connection in the middle of the body)."""
        with self.lock:
            self.faults.append(Fault(path, status, times, retry_after, reset))

    # Request handling

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def issue_token(self, client_id: str | None, secret: str | None) -> dict[str, Any]:
        if client_id != self.client_id or secret != self.client_secret:
            # OAuth2 (RFC 6749) error shape, not the data API's {"message": ...}.
            raise HttpError(401, "invalid_client", body={"error": "invalid_client"})
        token = secrets.token_hex(16)
        with self.lock:
            now = time.monotonic()
            self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
            if len(self.tokens) >= 15:
                raise HttpError(429, "Too many live tokens for this client.")
            self.tokens[token] = now + self.token_seconds
        return {"access_token": token, "expires_in": self.token_seconds, "token_type": "bearer"}

    def check_token(self, header: str | None) -> None:
        token = (header or "").removeprefix("Bearer ").strip()
        with self.lock:
            expiry = self.tokens.get(token)
        if expiry is None or expiry <= time.monotonic():
            raise HttpError(401, "Authorization denied. The access token is invalid or expired.")

    def dependencies(self) -> list[dict[str, Any]]:
        with self.lock:
            known = list(edfi_data.RESOURCE_ORDER)
            known += [
                r.split("/", 1)[1] for r in self.store.records if r.split("/", 1)[1] not in known
            ]
        return [
            {"resource": f"/ed-fi/{name}", "order": n, "operations": ["Create", "Update"]}
            for n, name in enumerate(known, start=1)
        ]

    def collection(
        self, namespace: str, resource: str, query: dict[str, str]
    ) -> tuple[list[Any], dict[str, str]]:
        """GET of a collection (items, deletes or keyChanges): the page and extra headers."""
        kind = "items"
        for extra in ("deletes", "keyChanges"):
            if resource.endswith("/" + extra):
                kind, resource = extra, resource[: -len(extra) - 1]
        if f"{namespace}/{resource}" in self.forbidden:
            raise HttpError(
                403,
                "Access to the resource could not be authorized. The API client's assigned "
                "claim set does not include the resource.",
            )
        if kind == "keyChanges" and not self.flavor.key_changes:
            raise HttpError(404, "Not found.")
        limit = _int(query.get("limit", query.get("pageSize", DEFAULT_LIMIT)), "limit")
        if not 0 <= limit <= MAX_LIMIT:
            raise HttpError(
                400, f"Limit must be omitted or set to a value between 0 and {MAX_LIMIT}."
            )
        offset = _int(query.get("offset", 0), "offset")
        low = _int(query.get("minChangeVersion", 0), "minChangeVersion")
        high = _int(query.get("maxChangeVersion", 2**62), "maxChangeVersion")
        if not self.change_queries:
            low, high = 0, 2**62
        with self.lock:
            if kind == "items":
                items = self.store.records.get(f"{namespace}/{resource}", {})
                chosen: list[Any] = [
                    items[i]
                    for i in sorted(items)
                    if low <= items[i].change_version <= high and _matches(items[i].body, query)
                ]
            else:
                log = (self.store.deletes if kind == "deletes" else self.store.key_changes).get(
                    f"{namespace}/{resource}", []
                )
                chosen = [e for e in log if low <= e["changeVersion"] <= high]
            headers: dict[str, str] = {}
            if query.get("totalCount", "").lower() == "true" and (
                kind != "deletes" or self.flavor.deletes_count
            ):
                headers["Total-Count"] = str(len(chosen))
            if "pageToken" in query and self.flavor.cursor_paging:
                offset = _int(base64.b64decode(query["pageToken"]).decode(), "pageToken")
            page = chosen[offset : offset + limit]
            cursor = self.flavor.cursor_paging and kind == "items" and "offset" not in query
            if cursor and offset + limit < len(chosen):
                headers["Next-Page-Token"] = base64.b64encode(str(offset + limit).encode()).decode()
            if kind == "items":
                body = [self.render(r) for r in page]
            else:
                body = [self._render_change(e) for e in page]
        if kind == "items" and limit:
            for hook in list(self.page_hooks):
                hook(resource, offset)
        return body, headers

    def _render_change(self, entry: dict[str, Any]) -> dict[str, Any]:
        shown = dict(entry)
        if not self.flavor.deletes_have_keys:
            # 5.3 reports deleted ids as hyphenated GUIDs (upper case), unlike its GETs.
            shown["id"] = str(uuid.UUID(entry["id"])).upper()
        return shown

    def available_change_versions(self) -> dict[str, int]:
        if not self.change_queries:
            raise HttpError(404, "Change queries are not enabled on this API.")
        with self.lock:
            oldest, newest = self.store.oldest, self.store.change_version
        if self.flavor.pascal_change_versions:
            return {"OldestChangeVersion": oldest, "NewestChangeVersion": newest}
        return {"oldestChangeVersion": oldest, "newestChangeVersion": newest}


def _int(value: object, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise HttpError(400, f"The value of {name} is not valid.") from None


_PAGING = {
    "limit",
    "offset",
    "totalCount",
    "minChangeVersion",
    "maxChangeVersion",
    "pageToken",
    "pageSize",
}


def _matches(body: dict[str, Any], query: dict[str, str]) -> bool:
    """Equality filters on top-level properties (``?schoolId=255901001``)."""
    for name, wanted in query.items():
        if name in _PAGING:
            continue
        value = body.get(name)
        shown = json.dumps(value) if isinstance(value, bool) else str(value)
        if value is None or shown != wanted:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the emulator."""

    api: EdfiEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the emulator's state, not its log."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        api = self.api
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with api.lock:
            api.requests.append((method, self.path))
        fault = api.take_fault(parts.path)
        try:
            if fault is not None and not fault.reset:
                headers = (
                    {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                )
                raise HttpError(fault.status, f"Injected fault {fault.status}.", headers)
            status, body, headers = self._route(
                method, [s for s in parts.path.split("/") if s], query, raw
            )
        except HttpError as exc:
            status, headers, body = exc.status, exc.headers, exc.body
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if fault is not None and fault.reset:
            # Half the body, then the connection goes away.
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(payload)

    def _route(
        self, method: str, segments: list[str], query: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        api = self.api
        if not segments and method == "GET":
            return 200, api.root_document(), {}
        if segments == api.oauth_path() and method == "POST":
            return 200, api.issue_token(*self._credentials(raw)), {}
        if segments == ["metadata", "data", "v3", "dependencies"]:
            return 200, api.dependencies(), {}
        if segments == ["metadata"]:
            return (
                200,
                [
                    {
                        "name": "Resources",
                        "endpointUri": f"{api.url}/metadata/data/v3/resources/swagger.json",
                    },
                    {
                        "name": "Descriptors",
                        "endpointUri": f"{api.url}/metadata/data/v3/descriptors/swagger.json",
                    },
                ],
                {},
            )
        cq = api.change_queries_prefix()
        if segments == [*cq, "availableChangeVersions"]:
            api.check_token(self.headers.get("Authorization"))
            return 200, api.available_change_versions(), {}
        prefix = api.data_prefix()
        if segments[: len(prefix)] != prefix or len(segments) < len(prefix) + 2:
            raise HttpError(404, f"No route matches {'/'.join(segments)}.")
        api.check_token(self.headers.get("Authorization"))
        namespace, rest = segments[len(prefix)], segments[len(prefix) + 1 :]
        resource = rest[0]
        if method == "GET" and (len(rest) == 1 or rest[1] in ("deletes", "keyChanges")):
            body, headers = api.collection(namespace, "/".join(rest), query)
            return 200, body, headers
        if method == "GET" and len(rest) == 2:
            return 200, api.render(api._find(namespace, resource, rest[1])), {}
        if method == "POST" and len(rest) == 1:
            status, record = api.upsert(namespace, resource, _json(raw))
            location = "/".join([api.url, *prefix, namespace, resource, record.id])
            return status, None, {"Location": location, "ETag": api.render(record)["_etag"]}
        if method == "PUT" and len(rest) == 2:
            api.replace(namespace, resource, rest[1], _json(raw))
            return 204, None, {}
        if method == "DELETE" and len(rest) == 2:
            api.delete(namespace, resource, rest[1])
            return 204, None, {}
        raise HttpError(405, f"{method} is not allowed here.")

    def _credentials(self, raw: bytes) -> tuple[str | None, str | None]:
        """Client id and secret from HTTP Basic, a form body or a JSON body."""
        header = self.headers.get("Authorization") or ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user, password
        if "json" in (self.headers.get("Content-Type") or ""):
            data = _json(raw)
        else:
            data = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        if data.get("grant_type") not in (None, "client_credentials"):
            raise HttpError(400, "unsupported_grant_type")
        return data.get("client_id"), data.get("client_secret")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise HttpError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise HttpError(400, "The request body must be a JSON object.")
    return data


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator with the synthetic dataset until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--version", default="6.1", help="ODS/API version to imitate (5.3, 6.1, 7.3)"
    )
    parser.add_argument("--empty", action="store_true", help="start without the synthetic dataset")
    args = parser.parse_args(argv)
    api = EdfiEmulator(version=args.version)
    if not args.empty:
        api.load()
    api.start(args.port)
    print(f"Ed-Fi API emulator {args.version} on {api.url} (client panorama / panorama-secret)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        api.stop()


if __name__ == "__main__":
    main()
