"""HTTP to one Ed-Fi ODS/API: root document, URL shapes, OAuth2 token, GETs with retries.

Python's urllib: the protocol needs GET and one form POST, and the retry, token and error
rules are ours to state exactly. Errors become one SourceError line naming the datasource and
host; the client secret and tokens never appear in them.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from typing import Any
from urllib.parse import urlencode, urlsplit

from panorama_elt.datasources.edfi_settings import EdfiSettings, EdfiTable
from panorama_elt.errors import SourceError

log = logging.getLogger("panorama_elt")


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
                f"{self.where}: the token endpoint {public_url(url)} refused the credentials "
                f"(HTTP {status}): check client_id and client_secret"
            )
        if status != 200:
            raise SourceError(
                f"{self.where}: token request to {public_url(url)} failed: HTTP {status}"
            )
        payload = _json_object(body, f"{self.where}: the token answer")
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise SourceError(
                f"{self.where}: the token answer of {public_url(url)} has no access_token"
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
            raise EdfiHttpError(status, _message(body), public_url(full))
        try:
            return json.loads(body), headers
        except ValueError:
            raise SourceError(f"{self.where}: {public_url(full)} did not answer JSON") from None

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


def public_url(url: str) -> str:
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
