"""Keeps passwords and keys out of every line the tool prints or logs."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from panorama_elt.settings import Settings

MASK = "***"
# user:password@ in connection strings (mongodb://, mysql://, https://...).
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@"
)


class SecretFilter(logging.Filter):
    """Replaces known secret values (and URL credentials) in log records and messages."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, *values: str | None) -> None:
        """Remember values to hide."""
        # Very short values would mask ordinary letters everywhere; 4+ characters are masked.
        self.secrets.update(v for v in values if v and len(v) >= 4)

    def add_from_settings(self, settings: Settings) -> None:
        """Remember every password, key and URI of the settings."""
        lake = settings.datalake
        self.add(lake.aws_access_key, lake.aws_secret_access_key)
        for url in (lake.endpoint_url,):
            userinfo = urlsplit(url or "").password
            self.add(userinfo)
        for ds in settings.datasources:
            if ds.mysql:
                self.add(ds.mysql.password)
            if ds.mongodb:
                self.add(ds.mongodb.password, ds.mongodb.uri)
            if ds.edfi:
                self.add(ds.edfi.client_secret)

    def scrub(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.scrub(text)
            record.exc_info = None
        return True


def install_secret_filter(secret_filter: SecretFilter) -> None:
    """Attach the filter to every root handler, so library loggers are scrubbed too."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(secret_filter)
