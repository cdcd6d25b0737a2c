"""The fast path of the MySQL datasource: rows read straight off the wire, in batches.

pymysql spends about 1 us per value on a row (several layers of calls, each value decoded to
str). This reads what the socket has, 128 KiB at a time, frames the text-protocol row packets
itself and hands each batch over in the packed form of panorama_elt.rows, built in place from
the packets' bytes. To do that it uses pymysql internals: the connection's ``_rfile``,
``_next_seq_id`` and ``_force_close``, and the unbuffered result's ``unbuffered_active``,
``has_next`` and ``_check_packet_is_eof``. So it runs only with the pymysql versions it was
tested with, and only when those internals are there (``unsupported``); otherwise the
datasource reads through pymysql's public SSCursor API and writes the same bytes, slower.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pymysql
import pymysql.constants.CR
import pymysql.err
import pymysql.protocol

from panorama_elt.rows import (
    PACK_NULL,
    PACK_PAD,
    PACK_ROW,
    PACK_VALUE,
    Batches,
    PackedRows,
    count_markers,
)

# The pymysql releases whose internals this was written and tested against.
TESTED_VERSIONS = ("1.2.4",)
# The environment variable that turns the fast path off.
FAST_PATH_SWITCH = "PANORAMA_MYSQL_FAST_PATH"
# Bytes asked of the socket at a time; the rows they hold make one batch (128 KiB).
READ_BYTES = 1 << 17
_MAX_PACKET = 0xFFFFFF  # a payload this long continues in the next packet
_EOF, _ERROR = 0xFE, 0xFF  # first bytes of the packets that end a result
_CONNECTION_NEEDS = ("_rfile", "_next_seq_id", "_force_close", "encoding")
_RESULT_NEEDS = ("fields", "has_next", "unbuffered_active", "_check_packet_is_eof", "connection")


def pymysql_version() -> str:
    """The release of the pymysql module imported (its own VERSION, e.g. "1.2.4")."""
    return ".".join(str(part) for part in pymysql.VERSION[:3])


def unsupported(cursor: Any) -> str | None:
    """Why the fast path cannot read this cursor's result (None when it can).

    ``cursor`` is an SSCursor whose query was just sent. ``PANORAMA_MYSQL_FAST_PATH=0`` in the
    environment turns the fast path off (reading processes inherit it).
    """
    if os.environ.get(FAST_PATH_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{FAST_PATH_SWITCH} is off"
    version = pymysql_version()
    if version not in TESTED_VERSIONS:
        tested = ", ".join(TESTED_VERSIONS)
        return f"pymysql {version} is not a version the wire reader was tested with ({tested})"
    result = getattr(cursor, "_result", None)
    connection: Any = getattr(cursor, "connection", None)
    missing = [f"connection.{n}" for n in _CONNECTION_NEEDS if not hasattr(connection, n)]
    missing += [f"result.{n}" for n in _RESULT_NEEDS if not hasattr(result, n)]
    if not hasattr(pymysql.protocol, "MysqlPacket"):
        missing.append("pymysql.protocol.MysqlPacket")
    if missing:
        return f"pymysql {version} lacks {', '.join(missing)}"
    rfile = connection._rfile
    if not (hasattr(rfile, "read1") and hasattr(rfile, "read")):
        return f"pymysql {version}: the connection's reader has no read1/read"
    if not getattr(result, "unbuffered_active", False):
        return f"pymysql {version}: the result is not an unbuffered one"
    return None


def batches(
    cursor: Any, key_length: int = 0, dates: Sequence[int] = (), pack: bool = True
) -> Batches:
    """The rows of the SSCursor's result (see ``unsupported``), read from the wire in batches.

    Each batch is PackedRows when ``pack`` (the values are text), with the first
    ``key_length`` values of each row as its partition key and the values of the ``dates``
    columns picked out; or else a list of rows, each a list of values (bytes, None for NULL).
    The final EOF or error packet goes back to pymysql, so the connection stays usable.
    """
    return wire_batches(cursor.connection, cursor._result, key_length, dates, pack)


def abandon(cursor: Any) -> None:
    """Forget a result not read to its end (the caller then closes the connection)."""
    result = getattr(cursor, "_result", None)
    if result is not None:
        result.unbuffered_active = False


def wire_batches(
    connection: Any, result: Any, key_length: int, dates: Sequence[int], pack: bool
) -> Batches:
    """``batches`` of a connection and its unbuffered result (column definitions read, rows
    not yet)."""
    columns = len(result.fields)
    rfile = connection._rfile
    seq = connection._next_seq_id
    # A row's values after its key, as runs of plain values each followed by one to pick.
    picks = sorted(dates)
    plan = [
        (b - a - 1, b) for a, b in zip([-1, *picks], [*picks, columns - key_length], strict=True)
    ]
    plan[-1] = (plan[-1][0], -1)
    buf = bytearray()
    while True:
        end = len(buf)
        original = bytes(buf)  # the packets as received: for keys, picks and fallbacks
        if pack:
            packed, pos, seq, last = _pack_packets(
                buf, original, end, seq, columns, key_length, plan
            )
        else:
            packed, pos, seq, last = None, *_frame(original, end, seq)
        if pos:
            if packed is None:
                yield _list_rows(original, pos, columns)
            else:
                yield packed
        if last is not None:
            _finish(connection, result, seq, last, leftover=end - pos - 4 - len(last))
            return
        del buf[:pos]
        if len(buf) >= 4 and buf[0] == buf[1] == buf[2] == 0xFF:
            # A row of 16 MiB or more arrives in several packets.
            payload, seq, rest = _read_long_packet(connection, rfile, bytes(buf), seq)
            yield [_parse_row(payload, 0, len(payload), columns)]
            buf = bytearray(rest)
            continue
        need = 4 if len(buf) < 4 else 4 + (buf[0] | buf[1] << 8 | buf[2] << 16)
        buf += _read_some(connection, rfile, need - len(buf))


_PADS = [bytes([PACK_PAD]) * n for n in range(256)]
# A row packet's 4-byte header becomes padding and the row's mark.
_ROW_HEAD = bytes([PACK_PAD, PACK_PAD, PACK_PAD, PACK_ROW])


def _pack_packets(
    b: bytearray,
    original: bytes,
    end: int,
    seq: int,
    columns: int,
    key_length: int,
    plan: list[tuple[int, int]],
) -> tuple[PackedRows | None, int, int, bytes | None]:
    """Turn the complete row packets at the start of ``b`` into PackedRows, in place.

    Returns the batch (None when a value holds a byte that looks like a marker: then the
    caller makes lists of the same packets), where the packets end, the next sequence id and
    the payload of the EOF or error packet if it came.
    """
    pos = rows = extra = 0
    keys: list[Any] = []
    add_key = keys.append
    picked: dict[int, list[bytes | None]] = {c: [] for _, c in plan if c >= 0}
    segments = [(range(plain), picked[c] if c >= 0 else None) for plain, c in plan]
    last = None
    # The hot loop of a whole extraction, a few hundred ns per value: inline code and local
    # names on purpose (a local is the cheapest name lookup).
    value_mark, null_mark = PACK_VALUE, PACK_NULL
    max_packet, eof, error = _MAX_PACKET, _EOF, _ERROR
    while end - pos >= 4:
        length = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16
        p = pos + 4
        stop = p + length
        if stop > end or length == max_packet:
            break
        if b[pos + 3] != seq:
            raise _out_of_sequence(None, b[pos + 3], seq)
        seq = (seq + 1) & 0xFF
        first = b[p]
        if (first == eof and length < 9) or first == error:
            last = original[p:stop]  # EOF or error: the end of the result
            break
        b[pos:p] = _ROW_HEAD
        if key_length == 1:
            n = first
            if n < 251:
                add_key(original[p + 1 : p + 1 + n])
                b[p : p + 1 + n] = _PADS[n + 1]
                extra += n
                p += n + 1
            else:
                key, p, extra = _pad_key(b, original, p, extra)
                add_key(key)
        elif key_length:
            key_values = []
            for _ in range(key_length):
                value, p, extra = _pad_key(b, original, p, extra)
                key_values.append(value)
            add_key(tuple(key_values))
        for plain, values in segments:
            for _ in plain:
                n = b[p]
                if n < 251:
                    b[p] = value_mark
                    p += n + 1
                elif n == 251:
                    b[p] = null_mark
                    p += 1
                else:
                    size, k = _long_length(b, p, n)
                    b[p] = value_mark
                    b[p + 1 : p + 1 + k] = _PADS[k]
                    extra += k
                    p += 1 + k + size
            if values is not None:
                n = b[p]
                if n < 251:
                    values.append(original[p + 1 : p + 1 + n])
                    b[p] = value_mark
                    p += n + 1
                elif n == 251:
                    values.append(None)
                    b[p] = null_mark
                    p += 1
                else:
                    size, k = _long_length(b, p, n)
                    values.append(original[p + 1 + k : p + 1 + k + size])
                    b[p] = value_mark
                    b[p + 1 : p + 1 + k] = _PADS[k]
                    extra += k
                    p += 1 + k + size
        if p != stop:
            raise _malformed(p - pos - 4, length)
        pos = stop
        rows += 1
    data = bytes(b[:pos])
    if count_markers(data) != rows * (4 + columns) + extra:
        return None, pos, seq, last  # a value holds a byte of 0xF5 or above: not UTF-8 text
    return PackedRows(data, rows, keys, picked), pos, seq, last


def _pad_key(b: bytearray, original: bytes, p: int, extra: int) -> tuple[bytes | None, int, int]:
    """Take the partition value at ``p`` out of the row: its bytes become padding."""
    n = b[p]
    if n == 251:
        b[p] = PACK_PAD
        return None, p + 1, extra
    size, k = (n, 0) if n < 251 else _long_length(b, p, n)
    b[p : p + 1 + k + size] = bytes([PACK_PAD]) * (1 + k + size)
    return original[p + 1 + k : p + 1 + k + size], p + 1 + k + size, extra + k + size


def _long_length(b: bytes | bytearray, p: int, n: int) -> tuple[int, int]:
    """The length of a value of 251 bytes or more, and how many bytes encode it after ``n``."""
    if n == 252:
        return b[p + 1] | b[p + 2] << 8, 2
    if n == 253:
        return b[p + 1] | b[p + 2] << 8 | b[p + 3] << 16, 3
    if n == 254:
        return int.from_bytes(b[p + 1 : p + 9], "little"), 8
    raise pymysql.err.InternalError(f"malformed row packet: a value starts with byte {n}")


def _frame(buf: bytes, end: int, seq: int) -> tuple[int, int, bytes | None]:
    """Where the complete row packets at the start of ``buf`` end (see _pack_packets), without
    packing."""
    pos = 0
    while end - pos >= 4:
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        stop = pos + 4 + length
        if stop > end or length == _MAX_PACKET:
            break
        if buf[pos + 3] != seq:
            raise _out_of_sequence(None, buf[pos + 3], seq)
        seq = (seq + 1) & 0xFF
        first = buf[pos + 4]
        if (first == _EOF and length < 9) or first == _ERROR:
            return pos, seq, buf[pos + 4 : stop]
        pos = stop
    return pos, seq, None


def _list_rows(buf: bytes, end: int, columns: int) -> list[list[bytes | None]]:
    """The rows of the (already checked) complete packets in ``buf[:end]``, as lists."""
    rows = []
    pos = 0
    while pos < end:
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        rows.append(_parse_row(buf, pos + 4, pos + 4 + length, columns))
        pos += 4 + length
    return rows


def _parse_row(buf: bytes, start: int, stop: int, columns: int) -> list[bytes | None]:
    """The length-encoded values of one text-protocol row packet."""
    row: list[bytes | None] = []
    p = start
    for _ in range(columns):
        n = buf[p]
        if n == 251:
            row.append(None)
            p += 1
            continue
        if n < 251:
            p += 1
        else:
            n, k = _long_length(buf, p, n)
            p += 1 + k
        row.append(buf[p : p + n])
        p += n
    if p != stop:
        raise _malformed(p - start, stop - start)
    return row


def _malformed(used: int, length: int) -> pymysql.err.InternalError:
    return pymysql.err.InternalError(
        f"malformed row packet: {used} bytes of values in a packet of {length}"
    )


def _read_long_packet(
    connection: Any, rfile: Any, buf: bytes, seq: int
) -> tuple[bytes, int, bytes]:
    """Join the pieces of a payload of 16 MiB or more; return it, the next sequence id and what follows."""
    pieces = []
    while True:
        if len(buf) < 4:
            buf += _read_some(connection, rfile, 4 - len(buf))
        length = buf[0] | buf[1] << 8 | buf[2] << 16
        if len(buf) < 4 + length:
            buf += _read_some(connection, rfile, 4 + length - len(buf))
        if buf[3] != seq:
            raise _out_of_sequence(connection, buf[3], seq)
        seq = (seq + 1) & 0xFF
        pieces.append(buf[4 : 4 + length])
        buf = buf[4 + length :]
        if length < _MAX_PACKET:
            return b"".join(pieces), seq, buf


def _read_some(connection: Any, rfile: Any, need: int) -> bytes:
    """At least ``need`` more bytes: whatever one socket read brings, or all of a large need."""
    try:
        data: bytes = rfile.read1(READ_BYTES) if need <= READ_BYTES else rfile.read(need)
        while 0 < len(data) < need:
            more = rfile.read(need - len(data))
            if not more:
                break
            data += more
    except OSError as exc:
        connection._force_close()
        raise pymysql.err.OperationalError(
            pymysql.constants.CR.CR_SERVER_LOST,
            f"Lost connection to MySQL server during query ({exc})",
        ) from None
    except BaseException:
        connection._force_close()
        raise
    if len(data) < need:
        connection._force_close()
        raise pymysql.err.OperationalError(
            pymysql.constants.CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
        )
    return data


def _out_of_sequence(connection: Any, got: int, expected: int) -> pymysql.err.MySQLError:
    """What pymysql raises for a packet out of sequence (MariaDB numbers 0 when shutting down)."""
    if connection is not None:
        connection._force_close()
    if got == 0:
        return pymysql.err.OperationalError(
            pymysql.constants.CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
        )
    return pymysql.err.InternalError(
        f"Packet sequence number wrong - got {got} expected {expected}"
    )


def _finish(connection: Any, result: Any, seq: int, payload: bytes, leftover: int) -> None:
    """Hand the result's last packet back to pymysql: EOF ends it, an error packet raises."""
    connection._next_seq_id = seq
    result.unbuffered_active = False
    result.connection = None
    result.rows = None
    packet = pymysql.protocol.MysqlPacket(payload, connection.encoding)
    if packet.is_error_packet():
        packet.raise_for_error()
    result._check_packet_is_eof(packet)
    if leftover or result.has_next:
        # Only one statement is ever sent: anything after its end is a protocol surprise.
        connection._force_close()
        raise pymysql.err.InternalError(f"{leftover} unexpected bytes after the result")
