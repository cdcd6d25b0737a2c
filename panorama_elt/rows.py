"""How rows travel from a datasource to the writer: batches, and the packed form of a batch.

A datasource hands a table over as batches of rows. Each row holds the values of the table's
partition fields first, then of its non-constant file fields, in the settings' order. A batch is
either a list of such rows or, for a source that can frame its rows cheaply, ``PackedRows``: the
whole batch in one bytes object, which the writer turns into file lines with a few
``bytes.replace`` calls over the batch instead of one call per value.

The packed form, for each row: ``PACK_ROW``, then for each file value ``PACK_VALUE`` and its UTF-8
bytes, or ``PACK_NULL`` alone for a NULL. ``PACK_PAD`` bytes may stand anywhere and are dropped.
The four markers are bytes that never occur in UTF-8 text (0xF5 and above), and a producer checks
that no value holds one (``count_markers``); a batch whose values are not all UTF-8 text is sent
as a list of rows instead. This module is the one place that defines the form: producers
(``pack_rows`` here, the MySQL wire reader) and the consumer (``encode_packed``) import it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from panorama_elt.encoding import FILE_ESCAPES

PACK_ROW = 0xFE  # starts a row
PACK_VALUE = 0xFF  # starts a value
PACK_NULL = 0xFD  # a NULL value (no bytes follow)
PACK_PAD = 0xF8  # filler, dropped
# Every byte below the markers: ``data.translate(None, BELOW_MARKERS)`` keeps only markers.
BELOW_MARKERS = bytes(range(0xF5))

ROW_MARK = bytes([PACK_ROW])
VALUE_MARK = bytes([PACK_VALUE])
NULL_MARK = bytes([PACK_NULL])
PAD_MARK = bytes([PACK_PAD])

# A partition key: the values of one row's partition fields, as the source gave them.
PartitionKey = tuple[Any, ...]


@dataclass
class PackedRows:
    """A batch of rows in packed form (see the module docstring).

    ``keys`` has each row's partition values: one value, or a tuple when the table has several
    partition fields (bytes or None). ``dates`` has, by index among the file values, the values
    of the date and datetime columns, for counting zero dates without unpacking.
    """

    data: bytes
    rows: int
    keys: list[Any]
    dates: dict[int, list[bytes | None]]


Batch = list[list[Any]] | PackedRows
Batches = Iterator[Batch]
# A second scan of a table, run in a process of its own: a picklable callable that opens its own
# connection and returns its batches.
Shard = Callable[[], Batches]


# Rows per batch for sources that produce rows one at a time.
BATCH_ROWS = 1000


def batched(rows: Iterable[list[Any]], size: int = BATCH_ROWS) -> Batches:
    """Rows one at a time, as batches of ``size`` rows (for sources of plain values)."""
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def count_markers(data: bytes) -> int:
    """How many marker bytes ``data`` holds."""
    return len(data.translate(None, BELOW_MARKERS))


def pack_rows(rows: Sequence[Sequence[bytes | None]]) -> bytes | None:
    """Rows of byte values (None for NULL) in packed form; None if a value is not UTF-8-safe.

    "Not safe" is a value that holds a marker byte, or one that is not bytes at all.
    """
    head = ROW_MARK + VALUE_MARK
    bodies = []
    expected = 0
    try:
        for row in rows:
            expected += 1 + len(row)
            if None in row:
                expected += row.count(None)
                row = [NULL_MARK if v is None else v for v in row]
            bodies.append(head + VALUE_MARK.join(row))  # type: ignore[arg-type]
    except TypeError:
        return None
    data = b"".join(bodies)
    # Markers we put there only: a value holding a byte of 0xF5 or above is not UTF-8 text
    # (a value equal to NULL_MARK itself counts one more than expected, and is caught too).
    if count_markers(data) != expected:
        return None
    return data.replace(VALUE_MARK + NULL_MARK, NULL_MARK)


# Markers to CSV punctuation, in this order: a row start is followed by its first value's mark,
# so once value and NULL marks are replaced a row start reads PACK_ROW then '","'.
_PUNCTUATION = (
    (VALUE_MARK, b'","'),
    (NULL_MARK, b'","\\\\N'),
    (ROW_MARK + b'","', b'"\n"'),
)


def encode_packed(data: bytes) -> bytes | None:
    """The file lines of packed rows (see panorama_elt.encoding), or None when a value is not
    valid UTF-8: the caller then encodes value by value (see ``unpack``), which names it."""
    chunk = data.translate(None, PAD_MARK)
    for plain, escaped in FILE_ESCAPES:
        chunk = chunk.replace(plain, escaped)
    for mark, punctuation in _PUNCTUATION:
        chunk = chunk.replace(mark, punctuation)
    lines = chunk[2:] + b'"\n'  # the first row start also closed a previous line
    if not lines.isascii():
        try:
            lines.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return lines


# One value of a row: its mark, then its bytes up to the next mark.
_PACKED_VALUE = re.compile(
    b"(["
    + re.escape(NULL_MARK + VALUE_MARK)
    + b"])([^"
    + re.escape(NULL_MARK + ROW_MARK + VALUE_MARK)
    + b"]*)"
)


def unpack(data: bytes) -> list[list[bytes | None]]:
    """The rows of packed data, as lists of values (the slow way, for error messages)."""
    rows = []
    for piece in data.translate(None, PAD_MARK).split(ROW_MARK)[1:]:
        rows.append([None if m[1][0] == PACK_NULL else m[2] for m in _PACKED_VALUE.finditer(piece)])
    return rows
