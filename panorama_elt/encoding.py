"""The one cell encoding of every file the tool writes, and its SQL decoder.

Athena reads the files with OpenCSVSerde (separatorChar ',', quoteChar '"', escapeChar '\\'),
which yields strings only, has no NULL marker and cannot hold a line break inside a field.
So every value is encoded in two layers:

1. Value layer: NULL becomes the two characters ``\\N``; in any other value a backslash
   becomes ``\\x5c``, LF becomes ``\\n`` and CR becomes ``\\r``. No real value can encode to
   ``\\N`` (its backslash would have become ``\\x5c``), and ordered ``replace`` calls decode
   it: ``\\n`` -> LF, ``\\r`` -> CR, then ``\\x5c`` -> backslash.
2. CSV layer: every field is quoted; inside it, backslash and quote are escaped with a
   backslash (``\\\\`` and ``\\"``). One record per line, LF line ends, a header line.

Binary values are written as lowercase hex, BIT values as their unsigned integer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

NULL_TOKEN = "\\N"
# Both layers applied at once: what one source character becomes in the file.
_NEEDS_ESCAPE = re.compile(r'[\\\n\r"]')
_FILE_NULL = '"\\\\N"'


def encode_text(value: str | bytes) -> str:
    """Encode a non-NULL string into its quoted file form."""
    if not isinstance(value, str):
        # JSON from MySQL 8 and text in binary-collated views arrive as bytes.
        value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    if _NEEDS_ESCAPE.search(value) is None:
        return '"' + value + '"'
    value = (
        value.replace("\\", "\\\\x5c")
        .replace("\n", "\\\\n")
        .replace("\r", "\\\\r")
        .replace('"', '\\"')
    )
    return '"' + value + '"'


def encode_value(value: str | None) -> str:
    """The value layer alone: what a partition value is registered as in the catalog."""
    if value is None:
        return NULL_TOKEN
    return value.replace("\\", "\\x5c").replace("\n", "\\n").replace("\r", "\\r")


def encode_binary(value: bytes | str) -> str:
    """Encode bytes as lowercase hex."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return '"' + value.hex() + '"'


def encode_bit(value: bytes | str | int) -> str:
    """Encode a BIT(n) value (big-endian bytes from MySQL) as its unsigned integer."""
    if isinstance(value, int):
        return '"' + str(value) + '"'
    if isinstance(value, str):
        value = value.encode("latin-1")
    return '"' + str(int.from_bytes(value, "big")) + '"'


def file_null() -> str:
    """The file form of NULL."""
    return _FILE_NULL


def encoder_for(kind: str) -> Callable[..., str]:
    """The encoder of one column kind (see column_types)."""
    if kind == "binary":
        return encode_binary
    if kind == "bit":
        return encode_bit
    # Numbers and dates come from the server as plain ASCII text, but a column the settings
    # call numeric may hold text in the source: every other kind takes the text path.
    return encode_text


# Both layers of escapes at once, as bytes: what one source byte becomes in the file (for
# encoding a whole batch of UTF-8 text with a few bytes.replace calls; see panorama_elt.rows).
FILE_ESCAPES = ((b"\\", b"\\\\x5c"), (b"\n", b"\\\\n"), (b"\r", b"\\\\r"), (b'"', b'\\"'))


def encode_row(cells: list[str]) -> str:
    """Join already-encoded cells into one line."""
    return ",".join(cells) + "\n"


def decode_value(value: str) -> str | None:
    """Decode one field as a CSV reader yields it (value layer only); used by tests and docs."""
    if value == NULL_TOKEN:
        return None
    return value.replace("\\n", "\n").replace("\\r", "\r").replace("\\x5c", "\\")


def sql_string(value: str) -> str:
    """A SQL string literal, for the few DDL places that cannot take a bound parameter."""
    return "'" + value.replace("'", "''") + "'"


def decode_sql(column: str) -> str:
    """SQL (Trino and DuckDB alike) that decodes a raw column to its text value or NULL."""
    return (
        f"replace(replace(replace(NULLIF({column}, {sql_string(NULL_TOKEN)}), "
        f"{sql_string(chr(92) + 'n')}, chr(10)), "
        f"{sql_string(chr(92) + 'r')}, chr(13)), "
        f"{sql_string(chr(92) + 'x5c')}, {sql_string(chr(92))})"
    )


def null_sql(column: str) -> str:
    """SQL that maps only the NULL token, for kinds whose text has no escapes."""
    return f"NULLIF({column}, {sql_string(NULL_TOKEN)})"
