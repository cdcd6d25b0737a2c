"""MariaDB -> files -> DuckDB: every typed view returns what SELECT on the source returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from panorama_elt.cli import main
from panorama_elt.datalakes.local import read_csv_sql
from panorama_elt.reference import country_codes_table
from panorama_elt.settings import Settings, TableSettings, load_settings
from tests.conftest import connect, local_datalake, mysql_source, template_tables, write_settings
from tests.opencsv import read_records

LMS = "lms.example.com"


def cli(settings: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--settings", str(settings), *args], catch_exceptions=False)
    return result


def source_rows(
    server: dict[str, Any], database: str, table: TableSettings
) -> list[tuple[Any, ...]]:
    """What a user's SELECT returns, in the form the typed view promises."""
    columns = []
    for f in table.fields:
        if f.constant:
            columns.append("%s")
        elif f.type.kind == "time":
            columns.append(f"CAST(`{f.name}` AS CHAR)")  # the view keeps TIME as its text
        else:
            columns.append(f"`{f.name}`")
    params = [f.value for f in table.fields if f.constant]
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM `{table.name}`", params)
        rows = cur.fetchall()
    types = [f.type for f in table.fields]
    return [tuple(_expected(v, t) for v, t in zip(row, types, strict=True)) for row in rows]


def _expected(value: Any, ctype: Any) -> Any:
    kind = ctype.kind
    if value is None:
        return None
    if kind == "decimal" and ctype.view_type == "VARCHAR":
        return format(value, "f")  # over 38 digits: the view keeps the exact text
    if kind == "decimal" and ctype.view_type == "DOUBLE":
        return float(value)
    if kind in ("datetime", "date") and isinstance(value, str):
        return None  # zero dates: pymysql cannot convert them, the view shows NULL
    if kind == "bit" and isinstance(value, bytes):
        return int.from_bytes(value, "big")
    return value


def view_rows(settings: Settings, table: TableSettings, lms: str = LMS) -> list[tuple[Any, ...]]:
    lake = settings.datalake
    db = duckdb.connect(str(lake.path / f"{lake.database}.duckdb"), read_only=True)
    try:
        columns = ", ".join(f'"{f.name}"' for f in table.fields)
        return db.execute(
            f'SELECT {columns} FROM "{table.datalake_table_view}" WHERE lms = ?', [lms]
        ).fetchall()
    finally:
        db.close()


def assert_same_rows(
    expected: list[tuple[Any, ...]], actual: list[tuple[Any, ...]], name: str
) -> None:
    assert len(actual) == len(expected), (
        f"{name}: {len(actual)} rows in the view, {len(expected)} in the source"
    )
    missing = sorted(set(expected) - set(actual), key=repr)[:3]
    extra = sorted(set(actual) - set(expected), key=repr)[:3]
    assert not missing and not extra, (
        f"{name}: source rows not in view {missing}; view rows not in source {extra}"
    )
    assert sorted(expected, key=repr) == sorted(actual, key=repr)


# Every file_format must give the same typed views.
FORMATS = pytest.mark.parametrize("file_format", ["csv", "parquet"])


@pytest.fixture
def openedx_settings(tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str) -> Path:
    """The template's tables into a CSV lake."""
    return openedx_settings_file(tmp_path, mysql_server, openedx_db, "csv")


def openedx_settings_file(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str, file_format: str
) -> Path:
    source = mysql_source(mysql_server, openedx_db, template_tables(), name="openedx_mysql")
    lake = local_datalake(tmp_path / "lake", file_format=file_format)
    return write_settings(tmp_path / "settings.yaml", lake, [source])


def full_load(settings_file: Path) -> Settings:
    for command in (["create-datalake-tables", "--all"], ["create-datalake-views", "--all"]):
        result = cli(settings_file, *command)
        assert result.exit_code == 0, result.output
    result = cli(
        settings_file,
        "extract-and-load",
        "--all",
        "--force",
        "--results-file",
        str(settings_file.parent / "r.json"),
    )
    assert result.exit_code == 0, result.output
    return load_settings(settings_file)


def results(settings_file: Path) -> dict[str, dict[str, Any]]:
    document = json.loads((settings_file.parent / "r.json").read_text())
    return {t["table"]: t for t in document["tables"]}


@FORMATS
def test_every_openedx_table_round_trips(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str, file_format: str
) -> None:
    openedx_settings = openedx_settings_file(tmp_path, mysql_server, openedx_db, file_format)
    settings = full_load(openedx_settings)
    counts = {}
    for table in settings.tables:
        expected = source_rows(mysql_server, openedx_db, table)
        assert_same_rows(expected, view_rows(settings, table), table.name)
        counts[table.name] = len(expected)
    # The dataset is not trivially small where it matters.
    assert counts["courseware_studentmodule"] >= 4000
    assert counts["auth_user"] >= 300
    summary = results(openedx_settings)
    assert summary["courseware_studentmodule"]["partitions_written"] == 8
    assert summary["auth_user"]["zero_dates"] >= 1


def test_opencsv_reader_agrees_with_duckdb_on_every_file(openedx_settings: Path) -> None:
    settings = full_load(openedx_settings)
    files = sorted(settings.datalake.path.glob("openedx/**/*.csv"))
    # The built-in country codes table is loaded with the others.
    tables = [*settings.tables, country_codes_table(settings)]
    assert len(files) >= len(tables)
    for path in files:
        table = next(t for t in tables if t.name == path.name[:-4])
        columns = [f.name for f in table.file_fields]
        duck = (
            duckdb.connect()
            .execute(f"SELECT * EXCLUDE (panorama_file) FROM {read_csv_sql([str(path)], columns)}")
            .fetchall()
        )
        serde = read_records(path.read_text(encoding="utf-8"))
        assert serde == [list(r) for r in duck], path


@FORMATS
def test_state_json_parses_identically(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str, file_format: str
) -> None:
    openedx_settings = openedx_settings_file(tmp_path, mysql_server, openedx_db, file_format)
    settings = full_load(openedx_settings)
    table = next(t for t in settings.tables if t.name == "courseware_studentmodule")
    lake = settings.datalake
    db = duckdb.connect(str(lake.path / "panorama.duckdb"), read_only=True)
    view = dict(db.execute(f"SELECT id, state FROM {table.datalake_table_view}").fetchall())
    with connect(mysql_server, openedx_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, state FROM courseware_studentmodule")
        source = dict(cur.fetchall())
    assert view == source
    documents = [key for key, state in source.items() if state is not None]
    assert len(documents) > 1000
    for key in documents:
        assert json.loads(view[key]) == json.loads(source[key])


def touch_courses(server: dict[str, Any], database: str, courses: list[str], when: str) -> int:
    touched = 0
    with connect(server, database) as conn, conn.cursor() as cur:
        for course in courses:
            cur.execute(
                "UPDATE courseware_studentmodule SET state = CONCAT('{\"touched\": \"', id, '\\\\n\"}'), "
                f"modified = {when} WHERE course_id = %s ORDER BY id LIMIT 25",
                [course],
            )
            touched += cur.rowcount
    return touched


def courses_of(server: dict[str, Any], database: str) -> list[str]:
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT course_id FROM courseware_studentmodule ORDER BY course_id")
        return [r[0] for r in cur.fetchall()]


@pytest.fixture
def own_openedx_db(mysql_server: dict[str, Any], scratch_db: str) -> str:
    """A private copy of the synthetic data, for tests that change the source."""
    from panorama_elt.synthetic.openedx_mysql import create_schema, generate

    with connect(mysql_server, scratch_db) as conn:
        create_schema(conn)
        generate(conn, users=200, courses=6, studentmodule_rows=1500, seed=11)
        with conn.cursor() as cur:
            # No row counts as recently changed until a test says so.
            cur.execute("UPDATE courseware_studentmodule SET modified = NOW(6) - INTERVAL 30 DAY")
    return scratch_db


def studentmodule_settings(
    tmp_path: Path, server: dict[str, Any], database: str, file_format: str = "csv"
) -> Path:
    tables = [t for t in template_tables() if t["name"] == "courseware_studentmodule"]
    return write_settings(
        tmp_path / "settings.yaml",
        local_datalake(tmp_path / "lake", file_format=file_format),
        [mysql_source(server, database, tables)],
    )


@FORMATS
def test_incremental_run_rewrites_only_changed_partitions(
    tmp_path: Path, mysql_server: dict[str, Any], own_openedx_db: str, file_format: str
) -> None:
    settings_file = studentmodule_settings(tmp_path, mysql_server, own_openedx_db, file_format)
    settings = full_load(settings_file)
    table = settings.tables[0]
    courses = courses_of(mysql_server, own_openedx_db)
    assert touch_courses(mysql_server, own_openedx_db, courses[:2], "NOW(6)") > 0
    result = cli(
        settings_file, "extract-and-load", "--all", "--results-file", str(tmp_path / "r.json")
    )
    assert result.exit_code == 0, result.output
    summary = results(settings_file)["courseware_studentmodule"]
    assert summary["mode"] == "incremental"
    assert summary["partitions_written"] == 2
    assert summary["partitions_registered"] == 0
    assert_same_rows(
        source_rows(mysql_server, own_openedx_db, table), view_rows(settings, table), table.name
    )
    # The look-back is never shorter than the interval (2 hours): the next run rewrites the same
    # two courses again, and still no other.
    result = cli(
        settings_file, "extract-and-load", "--all", "--results-file", str(tmp_path / "r.json")
    )
    assert result.exit_code == 0, result.output
    assert results(settings_file)["courseware_studentmodule"]["partitions_written"] == 2


@FORMATS
def test_skipped_runs_are_caught_up_from_the_mark(
    tmp_path: Path, mysql_server: dict[str, Any], own_openedx_db: str, file_format: str
) -> None:
    settings_file = studentmodule_settings(tmp_path, mysql_server, own_openedx_db, file_format)
    settings = full_load(settings_file)
    table = settings.tables[0]
    # The last successful run was 6 hours ago; a change 4 hours ago is older than the 2 hour
    # interval but newer than the mark, so it must still be picked up.
    mark_file = next(settings.datalake.path.glob("openedx/_panorama_state/**/state.json"))
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute("SELECT CAST(NOW(6) - INTERVAL 6 HOUR AS CHAR)")
        six_hours_ago = cur.fetchone()[0]
    mark_file.write_text(json.dumps({"mark": six_hours_ago}))
    course = courses_of(mysql_server, own_openedx_db)[-1]
    assert touch_courses(mysql_server, own_openedx_db, [course], "NOW(6) - INTERVAL 4 HOUR") > 0
    result = cli(
        settings_file, "extract-and-load", "--all", "--results-file", str(tmp_path / "r.json")
    )
    assert result.exit_code == 0, result.output
    assert results(settings_file)["courseware_studentmodule"]["partitions_written"] == 1
    assert_same_rows(
        source_rows(mysql_server, own_openedx_db, table), view_rows(settings, table), table.name
    )
    assert json.loads(mark_file.read_text())["mark"] > six_hours_ago


@FORMATS
def test_force_removes_deleted_courses_of_this_lms_only(
    tmp_path: Path, mysql_server: dict[str, Any], own_openedx_db: str, file_format: str
) -> None:
    settings_file = studentmodule_settings(tmp_path, mysql_server, own_openedx_db, file_format)
    settings = full_load(settings_file)
    table = settings.tables[0]
    # A second installation feeds the same datalake.
    other = write_settings(
        tmp_path / "other.yaml",
        local_datalake(tmp_path / "lake", lms="other.example.com", file_format=file_format),
        [
            mysql_source(
                mysql_server,
                own_openedx_db,
                [t for t in template_tables() if t["name"] == "courseware_studentmodule"],
            )
        ],
    )
    assert cli(other, "extract-and-load", "--all", "--force").exit_code == 0
    doomed = courses_of(mysql_server, own_openedx_db)[0]
    with connect(mysql_server, own_openedx_db) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM courseware_studentmodule WHERE course_id = %s", [doomed])
    result = cli(
        settings_file,
        "extract-and-load",
        "--all",
        "--force",
        "--results-file",
        str(tmp_path / "r.json"),
    )
    assert result.exit_code == 0, result.output
    assert results(settings_file)["courseware_studentmodule"]["partitions_removed"] == 1
    assert_same_rows(
        source_rows(mysql_server, own_openedx_db, table), view_rows(settings, table), table.name
    )
    # The other installation still has the course.
    other_rows = view_rows(settings, table, lms="other.example.com")
    assert any(r[3] == doomed for r in other_rows)
    folders = {
        p.parent.name
        for p in settings.datalake.path.glob(
            f"openedx/courseware_studentmodule/lms=lms.example.com/*/*.{file_format}"
        )
    }
    assert len(folders) == len(courses_of(mysql_server, own_openedx_db))


def test_added_column_and_compression_switch(
    tmp_path: Path, mysql_server: dict[str, Any], own_openedx_db: str
) -> None:
    """An Open edX upgrade adds a column; later the operator turns on gzip: nothing breaks."""
    settings_file = studentmodule_settings(tmp_path, mysql_server, own_openedx_db)
    full_load(settings_file)
    with connect(mysql_server, own_openedx_db) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE courseware_studentmodule ADD COLUMN note varchar(20) DEFAULT 'x'")
    for command in (["set-tables-fields", "--all"], ["create-datalake-tables", "--all"]):
        assert cli(settings_file, *command).exit_code == 0
    assert cli(settings_file, "create-datalake-views", "--all").exit_code == 0
    settings = load_settings(settings_file)
    table = settings.tables[0]
    # Files written before the column existed read it as NULL until they are rewritten.
    old = view_rows(settings, table)
    assert len(old) == len(source_rows(mysql_server, own_openedx_db, table))
    assert {r[-1] for r in old} == {None}
    # Switch to gzip and reload: every partition is a .csv.gz, no .csv is left to be read twice.
    text = settings_file.read_text().replace(
        "datalake_database: panorama", "datalake_database: panorama\n  compression: gzip"
    )
    settings_file.write_text(text)
    result = cli(settings_file, "extract-and-load", "--all", "--force")
    assert result.exit_code == 0, result.output
    settings = load_settings(settings_file)
    assert_same_rows(
        source_rows(mysql_server, own_openedx_db, table), view_rows(settings, table), table.name
    )
    lake = settings.datalake.path / "openedx" / "courseware_studentmodule"
    assert list(lake.rglob("*.csv")) == []
    assert len(list(lake.rglob("*.csv.gz"))) == len(courses_of(mysql_server, own_openedx_db))


def test_time_zone_setting_puts_now_in_utc(
    tmp_path: Path, mysql_server: dict[str, Any], own_openedx_db: str
) -> None:
    """A server in another zone: with mysql_time_zone '+00:00' the window still finds UTC changes."""
    from panorama_elt.datasources.mysql import MySQLDatasource

    settings_file = studentmodule_settings(tmp_path, mysql_server, own_openedx_db)
    text = settings_file.read_text()
    settings_file.write_text(text.replace("  tables:", "  mysql_time_zone: '+05:30'\n  tables:", 1))
    source = MySQLDatasource(load_settings(settings_file).datasources[0])
    utc_plus_530 = "SELECT CAST(UTC_TIMESTAMP(6) + INTERVAL 330 MINUTE AS CHAR)"
    with connect(mysql_server) as conn, conn.cursor() as cur:
        # now() read between two readings of UTC+05:30 (no assumption about how long it takes).
        cur.execute(utc_plus_530)
        before = cur.fetchone()[0]
        now = source.now()
        cur.execute(utc_plus_530)
        after = cur.fetchone()[0]
    assert before <= now <= after, (before, now, after)
    source.close()
    settings_file.write_text(
        text.replace("  tables:", "  mysql_time_zone: Mars/Olympus\n  tables:", 1)
    )
    result = cli(settings_file, "test-connections")
    assert result.exit_code == 1
    assert "mysql_time_zone: unknown time zone 'Mars/Olympus'" in result.output
