"""The torture table: every MySQL type and every awkward value, MariaDB -> files -> DuckDB, cell for cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from panorama_elt.cli import main
from panorama_elt.datalakes.local import read_csv_sql
from panorama_elt.settings import load_settings
from panorama_elt.views import create_view_sql
from tests.conftest import connect, local_datalake, mysql_source, write_settings
from tests.opencsv import read_records
from tests.test_encoding import AWKWARD
from tests.test_end_to_end import assert_same_rows, source_rows, view_rows

COLUMNS = [
    ("id", "int(11) NOT NULL PRIMARY KEY"),
    ("part", "varchar(100)"),
    ("t_tiny", "tinyint(4)"),
    ("t_tiny_u", "tinyint(3) unsigned"),
    ("t_bool", "tinyint(1)"),
    ("t_small", "smallint(6)"),
    ("t_medium", "mediumint(9)"),
    ("t_int_u", "int(10) unsigned"),
    ("t_big", "bigint(20)"),
    ("t_big_u", "bigint(20) unsigned"),
    ("t_dec", "decimal(10,4)"),
    ("t_dec38", "decimal(38,10)"),
    ("t_dec65", "decimal(65,30)"),
    ("t_float", "float"),
    ("t_double", "double"),
    ("t_datetime", "datetime(6)"),
    ("t_datetime0", "datetime"),
    ("t_timestamp", "timestamp(6) NULL DEFAULT NULL"),
    ("t_date", "date"),
    ("t_time", "time(6)"),
    ("t_year", "year(4)"),
    ("t_json", "longtext CHECK (json_valid(t_json))"),
    ("t_enum", "enum('a','b,c','it''s','')"),
    ("t_set", "set('x','y','z')"),
    ("t_char", "char(10)"),
    ("t_text", "longtext"),
    ("t_bit1", "bit(1)"),
    ("t_bit64", "bit(64)"),
    ("t_binary", "binary(4)"),
    ("t_varbinary", "varbinary(16)"),
    ("t_blob", "blob"),
    ("key", "varchar(10)"),
    ("end", "varchar(10)"),
    ("start", "int(11)"),
    ("order", "int(11)"),
]

# Every awkward text, at a size MariaDB's longtext takes in one INSERT.
TEXTS = [v if v is None or len(v) < 100_000 else v[:70_000] for v in AWKWARD]
PARTS = [
    "course-v1:Org+Code+Run",
    "a/b",
    "..",
    "../../etc",
    "it's",
    'say "hi"',
    "%2F",
    "x=y",
    "",
    "NULL",
    None,
    "😀",
    "A",
    "a",
    "a ",
    "\\N",
    "back\\slash",
    "new\nline",
]

EXTREMES: list[dict[str, Any]] = [
    dict(
        t_tiny=-128,
        t_tiny_u=255,
        t_bool=1,
        t_small=-32768,
        t_medium=-8388608,
        t_int_u=4294967295,
        t_big=-9223372036854775808,
        t_big_u=18446744073709551615,
        t_dec="-999999.9999",
        t_dec38="-9999999999999999999999999999.9999999999",
        t_dec65="-99999999999999999999999999999999999.999999999999999999999999999999",
        t_float=-3.40282e38,
        t_double=-1.7976931348623157e308,
        t_datetime="1000-01-01 00:00:00.000000",
        t_datetime0="1000-01-01 00:00:00",
        t_timestamp="1970-01-02 00:00:00.000001",
        t_date="1000-01-01",
        t_time="-838:59:59.000000",
        t_year=1901,
        t_enum="b,c",
        t_set="x,z",
        t_bit1=b"\x01",
        t_bit64=b"\xff" * 8,
        t_binary=b"\x00\x01\x02\x03",
        t_varbinary=bytes(range(16)),
        t_blob=bytes(range(256)),
    ),
    dict(
        t_tiny=127,
        t_tiny_u=0,
        t_bool=0,
        t_small=32767,
        t_medium=8388607,
        t_int_u=0,
        t_big=9223372036854775807,
        t_big_u=0,
        t_dec="0.0001",
        t_dec38="0.0000000001",
        t_dec65="0.000000000000000000000000000001",
        t_float=1.17549e-38,
        t_double=5e-324,
        t_datetime="9999-12-31 23:59:59.999999",
        t_datetime0="9999-12-31 23:59:59",
        t_timestamp="2038-01-19 03:14:07.999999",
        t_date="9999-12-31",
        t_time="838:59:59.000000",
        t_year=2155,
        t_enum="it's",
        t_set="",
        t_bit1=b"\x00",
        t_bit64=b"\x00" * 8,
        t_binary=b"ab\x00\x00",
        t_varbinary=b"",
        t_blob=b"",
    ),
    dict(
        t_float=0.1,
        t_double=0.1,
        t_dec="3.1416",
        t_datetime="0000-00-00 00:00:00.000000",
        t_datetime0="0000-00-00 00:00:00",
        t_timestamp="0000-00-00 00:00:00.000000",
        t_date="0000-00-00",
        t_time="00:00:00.000001",
        t_year=0,
        t_enum="",
        t_set="y",
        t_json="[]",
    ),
    dict(
        t_float=-0.0,
        t_double=-0.0,
        t_datetime="2024-02-29 12:34:56.789012",
        t_date="2024-02-29",
        t_time="-00:00:00.500000",
        t_year=2024,
        t_enum="a",
        t_json='{"a": "é\\n\\"q\\"", "b": [1, 2.5, null]}',
    ),
]


def rows() -> list[dict[str, Any]]:
    """Every awkward text in every text column, every partition value, every extreme."""
    out: list[dict[str, Any]] = []
    n = max(len(TEXTS), len(PARTS), len(EXTREMES))
    for i in range(n * 2):
        text = TEXTS[i % len(TEXTS)]
        row: dict[str, Any] = {
            "id": i + 1,
            "part": PARTS[i % len(PARTS)],
            "t_char": None if text is None else text.replace("\x00", "")[:10].rstrip(" "),
            "t_text": text,
            "key": None if text is None else text[:10],
            "end": TEXTS[(i + 3) % len(TEXTS)] if i % 3 else None,
            "start": i,
            "order": -i,
            "t_json": None if text is None else json.dumps({"v": text}),
        }
        if isinstance(row["end"], str):
            row["end"] = row["end"][:10]
        row.update(EXTREMES[i % len(EXTREMES)] if i < len(EXTREMES) * 2 else {})
        out.append(row)
    out.append({"id": 10_000})  # NULL everywhere it can be
    return out


def create_torture(server: dict[str, Any], database: str) -> None:
    ddl = ", ".join(f"`{name}` {ctype}" for name, ctype in COLUMNS)
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        cur.execute(
            f"CREATE TABLE torture ({ddl}) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        )
        for row in rows():
            names = ", ".join(f"`{k}`" for k in row)
            cur.execute(
                f"INSERT INTO torture ({names}) VALUES ({', '.join(['%s'] * len(row))})",
                list(row.values()),
            )


@pytest.fixture
def torture_settings(tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str) -> Path:
    """The torture table loaded into a CSV lake."""
    return load_torture(tmp_path, mysql_server, scratch_db, "csv")


@pytest.fixture(params=["csv", "parquet"])
def any_torture_settings(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str, request: pytest.FixtureRequest
) -> Path:
    """The torture table loaded into a lake of each file_format."""
    return load_torture(tmp_path, mysql_server, scratch_db, request.param)


def load_torture(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str, file_format: str
) -> Path:
    create_torture(mysql_server, scratch_db)
    # Only the name: the fields come from set-tables-fields, as a user would do it.
    source = mysql_source(mysql_server, scratch_db, [{"name": "torture"}])
    lake = local_datalake(tmp_path / "lake", file_format=file_format)
    settings = write_settings(tmp_path / "s.yaml", lake, [source])
    runner = CliRunner()
    for args in (
        ["set-tables-fields", "--all"],
        ["create-datalake-tables", "--all"],
        ["create-datalake-views", "--all"],
        ["extract-and-load", "--all", "--results-file", str(tmp_path / "r.json")],
    ):
        result = runner.invoke(main, ["--settings", str(settings), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return settings


def partition_by_part(settings: Path) -> None:
    import yaml

    data = yaml.safe_load(settings.read_text())
    data["datasources"][0]["tables"][0]["partitions"] = {"partition_fields": ["part"]}
    settings.write_text(yaml.safe_dump(data, sort_keys=False))


def test_every_type_and_value_round_trips(
    any_torture_settings: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    torture_settings = any_torture_settings
    settings = load_settings(torture_settings)
    table = settings.tables[0]
    assert [f.name for f in table.fields] == [c[0] for c in COLUMNS]
    expected = source_rows(mysql_server, scratch_db, table)
    assert len(expected) == len(rows())
    assert_same_rows(expected, view_rows(settings, table), "torture")
    summary = json.loads((torture_settings.parent / "r.json").read_text())["tables"][0]
    # Zero dates: datetime(6), datetime, timestamp(6), date of one row, and year 0 is not a date.
    zero_rows = sum(1 for r in rows() if str(r.get("t_date", "")).startswith("0000"))
    assert summary["zero_dates"] == 4 * zero_rows


def test_partition_values_of_any_kind_round_trip(
    any_torture_settings: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    torture_settings = any_torture_settings
    partition_by_part(torture_settings)
    runner = CliRunner()
    for args in (
        ["create-datalake-tables", "--all"],
        ["create-datalake-views", "--all"],
        ["extract-and-load", "--all", "--force"],
    ):
        result = runner.invoke(
            main, ["--settings", str(torture_settings), *args], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
    settings = load_settings(torture_settings)
    table = settings.tables[0]
    assert_same_rows(
        source_rows(mysql_server, scratch_db, table), view_rows(settings, table), "torture"
    )
    lake = settings.datalake.path
    name = f"torture.{settings.datalake.file_format}"
    folders = [p.parent for p in lake.rglob(name)]
    assert sorted(p.name for p in lake.rglob("torture.*")) == [name] * len(folders)
    assert len(folders) == len(set(PARTS))  # 'A', 'a' and 'a ' are three partitions
    table_root = (lake / "openedx" / "torture").resolve()
    for folder in folders:
        assert table_root in folder.resolve().parents
        assert folder.name.startswith("part=")


def test_opencsv_reader_and_duckdb_agree_on_the_torture_file(torture_settings: Path) -> None:
    settings = load_settings(torture_settings)
    table = settings.tables[0]
    (path,) = settings.datalake.path.rglob("torture.csv")
    columns = [f.name for f in table.file_fields]
    duck = (
        duckdb.connect()
        .execute(f"SELECT * EXCLUDE (panorama_file) FROM {read_csv_sql([str(path)], columns)}")
        .fetchall()
    )
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") == len(rows()) + 1  # one record per line
    assert read_records(text) == [list(r) for r in duck]


def test_athena_view_sql_for_the_torture_table(torture_settings: Path) -> None:
    settings = load_settings(torture_settings)
    sql = create_view_sql(settings.tables[0], settings.datalake, "athena")
    assert 'CAST(NULLIF("t_big_u", \'\\N\') AS DECIMAL(20,0)) AS "t_big_u"' in sql
    assert 'NULLIF("t_dec65", \'\\N\') AS "t_dec65"' in sql  # 65 digits: exact text
    assert 'CAST(NULLIF("t_dec38", \'\\N\') AS DECIMAL(38,10)) AS "t_dec38"' in sql
    assert 'AS TIMESTAMP(6)) END AS "t_timestamp"' in sql
    assert 'from_hex(NULLIF("t_blob", \'\\N\')) AS "t_blob"' in sql
    assert 'NULLIF("t_time", \'\\N\') AS "t_time"' in sql
    for reserved in ("key", "end", "start", "order"):
        assert f'AS "{reserved}"' in sql
