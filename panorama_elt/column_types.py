"""MySQL column types as written in settings (`int(11)`, `decimal(5,2)`, `bigint unsigned`...)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Each source type belongs to one kind; the kind decides how a cell is written to the CSV
# file and how the typed view decodes it back.
_KINDS: dict[str, str] = {
    **dict.fromkeys(
        ("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "bool", "boolean", "year"),
        "integer",
    ),
    **dict.fromkeys(("decimal", "numeric", "dec", "fixed"), "decimal"),
    **dict.fromkeys(("float", "double", "real", "double precision"), "float"),
    **dict.fromkeys(("datetime", "timestamp"), "datetime"),
    "date": "date",
    "time": "time",
    **dict.fromkeys(
        (
            "char",
            "varchar",
            "tinytext",
            "text",
            "mediumtext",
            "longtext",
            "json",
            "enum",
            "set",
            "uuid",
            "inet4",
            "inet6",
            "string",
        ),
        "text",
    ),
    **dict.fromkeys(
        ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"), "binary"
    ),
    "bit": "bit",
}

_TYPE_RE = re.compile(
    r"^\s*(?P<base>[a-z]+(?: precision)?)\s*(?:\((?P<args>.*)\))?"
    r"(?P<mods>(?:\s+(?:unsigned|signed|zerofill))*)\s*$",
    re.IGNORECASE,
)

# Trino/Athena and DuckDB both hold DECIMAL up to 38 digits.
MAX_DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class ColumnType:
    """A parsed source column type."""

    written: str  # as the settings wrote it
    base: str
    args: tuple[str, ...] = ()
    unsigned: bool = False

    @property
    def kind(self) -> str:
        """integer, decimal, float, datetime, date, time, text, binary or bit."""
        return _KINDS[self.base]

    @property
    def view_type(self) -> str:
        """The SQL type of this column in the typed view (same name in Trino and DuckDB)."""
        kind = self.kind
        if kind == "integer":
            if self.base == "bigint" and self.unsigned:
                return "DECIMAL(20,0)"  # 2**64-1 does not fit a signed BIGINT
            return "BIGINT"
        if kind == "bit":
            return "DECIMAL(20,0)" if self.bit_width == 64 else "BIGINT"
        if kind == "decimal":
            if len(self.args) != 2 and len(self.args) != 1:
                # Settings written without precision (as the original tool did) cannot
                # promise an exact type: fall back to DOUBLE as it always has.
                return "DOUBLE"
            precision = int(self.args[0])
            scale = int(self.args[1]) if len(self.args) == 2 else 0
            if precision > MAX_DECIMAL_PRECISION:
                return "VARCHAR"  # exact digits kept as text rather than rounded
            return f"DECIMAL({precision},{scale})"
        if kind == "float":
            return "DOUBLE"
        if kind == "datetime":
            return "TIMESTAMP"
        if kind == "date":
            return "DATE"
        if kind == "binary":
            return "VARBINARY"
        return "VARCHAR"  # text, and time (which may be negative or over 24 hours)

    @property
    def bit_width(self) -> int:
        """Number of bits of a BIT(n) column (1 when not given)."""
        return int(self.args[0]) if self.args else 1


def parse_column_type(text: object) -> ColumnType:
    """Parse a type string; raise ValueError with a short reason when it is not one we know."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be a MySQL type name such as int, varchar(255) or datetime(6)")
    match = _TYPE_RE.match(text)
    if not match:
        raise ValueError(f"unknown type {text!r}")
    base = " ".join(match["base"].lower().split())
    if base not in _KINDS:
        raise ValueError(f"unknown type {text!r}")
    args: tuple[str, ...] = ()
    if match["args"] is not None:
        args = tuple(a.strip() for a in match["args"].split(","))
        if _KINDS[base] in ("decimal", "bit", "integer") and not all(a.isdigit() for a in args):
            raise ValueError(f"bad size in type {text!r}")
    mods = match["mods"].lower().split()
    return ColumnType(written=text, base=base, args=args, unsigned="unsigned" in mods)
