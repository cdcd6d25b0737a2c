"""The cell encoding: every string survives OpenCSVSerde's and DuckDB's CSV readers and decodes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panorama_elt.column_types import parse_column_type
from panorama_elt.datalakes.local import read_csv_sql
from panorama_elt.encoding import decode_sql, decode_value, encode_value
from panorama_elt.rows import PackedRows, batched, pack_rows
from panorama_elt.settings import FieldSettings, TableSettings
from panorama_elt.writer import CsvWriter
from tests.opencsv import read_records

AWKWARD = [
    None,
    "",
    "NULL",
    "null",
    "\\N",
    "\\",
    "\\\\",
    "trailing\\",
    '"',
    '""',
    "'",
    ",",
    '","',
    "a,b",
    "\n",
    "\r",
    "\r\n",
    "line1\nline2\r\nline3\rline4",
    "\\n",
    "\\r",
    "\\x5c",
    "\\x5cN",
    "\t",
    "tab\there",
    "\x00nul",
    "\x01\x07\x1b\x7f",
    "😀 𝔘 naïve 中文",
    "\u2028\u0085\ufeff",
    '{"a": "he said \\"hi\\"\\n", "b": [1, 2]}',
    " leading and trailing ",
    "x" * 100_000,
]


def table_of(n_columns: int) -> TableSettings:
    fields = tuple(FieldSettings(f"c{i}", parse_column_type("longtext")) for i in range(n_columns))
    return TableSettings("t", "db", "raw_t", "table_t", fields)


def packed_batches(rows: list[list[str | None]]) -> Iterator[PackedRows]:
    """The rows as the MySQL wire reader hands them over: packed batches of UTF-8 bytes."""
    for batch in batched(rows, 7):
        values = [[None if v is None else v.encode("utf-8") for v in row] for row in batch]
        data = pack_rows(values)
        assert data is not None
        yield PackedRows(data, len(values), [()] * len(values), {})


def write_rows(tmp_path: Path, rows: list[list[str | None]]) -> Path:
    """The one file of a table without partitions, written the way datasources hand rows over:
    plain values (file and HTTP sources), lists of bytes (MySQL's public cursor path) and packed
    batches (MySQL's wire reader). All three must give the same bytes; the first is returned."""
    files = []
    table = table_of(len(rows[0]))
    as_bytes = [[None if v is None else v.encode("utf-8") for v in row] for row in rows]
    forms = [
        (batched(rows, 7), False),
        (batched(as_bytes, 7), True),
        (packed_batches(rows), True),
    ]
    for n, (batches, bytes_values) in enumerate(forms):
        folder = tmp_path / f"form-{n}"
        folder.mkdir(exist_ok=True)
        ((key, written),) = CsvWriter(table, folder).write(batches, bytes_values)
        assert key == ()
        files.append(written.path)
    first = files[0].read_bytes()
    assert all(path.read_bytes() == first for path in files[1:])
    return files[0]


def duckdb_records(path: Path, n_columns: int) -> list[list[str]]:
    columns = [f"c{i}" for i in range(n_columns)]
    sql = f"SELECT {', '.join(columns)} FROM {read_csv_sql([str(path)], columns)}"
    return [list(r) for r in duckdb.connect().execute(sql).fetchall()]


def test_awkward_values_read_the_same_by_opencsv_and_duckdb_and_decode_back(tmp_path: Path) -> None:
    rows = [[v, v] for v in AWKWARD]
    path = write_rows(tmp_path, rows)
    text = path.read_text(encoding="utf-8")
    serde = read_records(text)
    duck = duckdb_records(path, 2)
    assert len(serde) == len(rows)
    assert serde == duck
    assert [[decode_value(c) for c in r] for r in serde] == rows


def test_no_line_break_inside_a_record(tmp_path: Path) -> None:
    path = write_rows(tmp_path, [[v] for v in AWKWARD])
    raw = path.read_bytes()
    assert raw.count(b"\n") == len(AWKWARD) + 1
    assert b"\r" not in raw


def test_null_token_is_unique() -> None:
    encoded = {v: encode_value(v) for v in AWKWARD}
    assert [v for v, e in encoded.items() if e == "\\N"] == [None]


@pytest.mark.parametrize("value", AWKWARD)
def test_sql_decoder_matches_python_decoder(value: str | None) -> None:
    encoded = encode_value(value)
    (decoded,) = duckdb.connect().execute(f"SELECT {decode_sql('?')}", [encoded]).fetchone()
    assert decoded == value


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.text()), min_size=3, max_size=3), min_size=1, max_size=20
    )
)
def test_any_text_round_trips(tmp_path: Path, rows: list[list[str | None]]) -> None:
    # Surrogates cannot be written as UTF-8 and never come out of MySQL.
    rows = [[v.encode("utf-8", "replace").decode() if v else v for v in r] for r in rows]
    path = write_rows(tmp_path, rows)
    serde = read_records(path.read_text(encoding="utf-8"))
    assert serde == duckdb_records(path, 3)
    assert [[decode_value(c) for c in r] for r in serde] == rows
