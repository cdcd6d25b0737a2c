"""How `panorama.py query` prints rows: an aligned table, CSV, or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], output: str) -> str:
    """The rows in ``output`` format (``table``, ``csv`` or ``json``), ending with a newline."""
    if output == "json":
        return (
            json.dumps(
                [dict(zip(columns, row, strict=True)) for row in rows],
                default=_json,
                ensure_ascii=False,
                indent=2,
            )
            + "\n"
        )
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in rows])
        return buffer.getvalue()
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "  ".join("-" * w for w in widths),
        *("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells),
        f"({len(rows)} row{'' if len(rows) == 1 else 's'})",
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _text(value: Any) -> str:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def _cell(value: Any) -> str:
    """One line per cell on a terminal: NULL spelled out, line breaks shown as \\n."""
    if value is None:
        return "NULL"
    return _text(value).replace("\r", "\\r").replace("\n", "\\n")


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return _text(value)
