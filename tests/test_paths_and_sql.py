"""Object keys and view SQL are pure functions: checked as strings."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from panorama_elt.column_types import parse_column_type
from panorama_elt.encoding import encode_value
from panorama_elt.paths import object_key, partition_folder, state_key, values_from_folder
from panorama_elt.settings import DatalakeSettings
from panorama_elt.views import column_sql, create_view_sql
from tests.builders import datalake_settings, studentmodule


def lake(prefix: str | None = "openedx", compression: str | None = None) -> DatalakeSettings:
    return datalake_settings(base_prefix=prefix, path=Path("/tmp/x"), compression=compression)


def test_object_key_layout() -> None:
    key = object_key(studentmodule(), lake(), ("lms.example.com", "course-v1:Org+Code+Run"))
    assert key == (
        "openedx/courseware_studentmodule/lms=lms.example.com/"
        "course_id=course-v1%3AOrg%2BCode%2BRun/courseware_studentmodule.csv"
    )


def test_object_key_without_prefix_and_gzip() -> None:
    key = object_key(studentmodule(), lake(None, "gzip"), ("lms.example.com", "c"))
    assert (
        key
        == "courseware_studentmodule/lms=lms.example.com/course_id=c/courseware_studentmodule.csv.gz"
    )


@pytest.mark.parametrize(
    "value",
    [
        "course-v1:Org+Code+Run",
        "'",
        '"',
        "/",
        "..",
        "../../etc",
        "a/b",
        "=",
        "%",
        "%2F",
        " ",
        "ünï 😀",
        "",
        "NULL",
        None,
        "\\N",
        "a\nb",
    ],
)
def test_partition_values_round_trip_and_stay_in_the_table_folder(value: str | None) -> None:
    encoded = encode_value(value)
    folder = partition_folder(studentmodule(), lake(), ("lms.example.com", encoded))
    assert folder.startswith("openedx/courseware_studentmodule/lms=lms.example.com/course_id=")
    levels = folder.split("/")
    assert len(levels) == 4
    assert not any(level in (".", "..", "") for level in levels)
    assert values_from_folder(folder) == ("lms.example.com", encoded)


def test_state_key_is_per_installation() -> None:
    assert state_key(studentmodule(), lake()) == (
        "openedx/_panorama_state/openedx_raw_courseware_studentmodule/lms=lms.example.com/state.json"
    )


def test_view_sql_both_dialects() -> None:
    duck = create_view_sql(studentmodule(), lake(), "duckdb")
    athena = create_view_sql(studentmodule(), lake(), "athena")
    assert duck.startswith('CREATE OR REPLACE VIEW "openedx_table_courseware_studentmodule" AS')
    assert 'CAST(NULLIF("id", \'\\N\') AS BIGINT) AS "id"' in duck
    assert "AS TIMESTAMP(6)" in athena and "AS TIMESTAMP(6)" not in duck
    assert '"lms"' in duck.split("FROM")[0]
    assert duck.rstrip().endswith('FROM "openedx_raw_courseware_studentmodule"')


@pytest.mark.parametrize(
    "ctype, raw, expected",
    [
        ("int(11)", "42", 42),
        ("tinyint(1)", "1", 1),
        ("bigint(20) unsigned", "18446744073709551615", 18446744073709551615),
        ("bigint(20)", "-9223372036854775808", -9223372036854775808),
        ("decimal(5,2)", "0.50", __import__("decimal").Decimal("0.50")),
        ("double", "0.1", 0.1),
        ("float", "3.40282e38", 3.40282e38),
        ("year", "2024", 2024),
        ("time", "-838:59:59", "-838:59:59"),
        ("date", "0000-00-00", None),
        ("datetime(6)", "0000-00-00 00:00:00", None),
        ("datetime", "2024-02-00 10:00:00", None),
        ("bit(1)", "1", 1),
        ("varbinary(4)", "00ff", b"\x00\xff"),
        ("varchar(10)", "\\N", None),
    ],
)
def test_column_decoding_in_duckdb(ctype: str, raw: str, expected: object) -> None:
    sql = column_sql("c", parse_column_type(ctype), "duckdb")
    (value,) = duckdb.connect().execute(f"SELECT {sql} FROM (SELECT ? AS c)", [raw]).fetchone()
    assert value == expected


def test_athena_binary_uses_from_hex() -> None:
    assert column_sql("b", parse_column_type("blob"), "athena") == "from_hex(NULLIF(\"b\", '\\N'))"
