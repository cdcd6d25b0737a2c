"""A failure is one table's failure: library errors and bugs fail their table, the rest still load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from panorama_elt.cli import main
from panorama_elt.datalakes.local import LocalDatalake
from tests.conftest import connect, local_datalake, mysql_source, write_settings
from tests.test_reliability import BIG, finish, panorama

# The MySQL password, and (so that error messages and tracebacks quote it) part of the
# datalake's folder name: the output must show the folder as lake-***.
SECRET = "Qx7-failure-Pw"
# Partitioned by course, incremental on `modified`: the table of the reliability tests.
A = {**BIG, "name": "a"}
B = {
    "name": "b",
    "fields": [{"name": "id", "type": "int(11)"}, {"name": "note", "type": "varchar(20)"}],
}


@pytest.fixture
def settings(tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str) -> Iterator[Path]:
    """Tables a (by course, incremental) then b, read by a user whose password is SECRET."""
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE a (id int primary key, course_id varchar(64), payload varchar(200), "
            "modified datetime(6))"
        )
        cur.execute(
            "INSERT INTO a VALUES (1, 'c1', 'p', NOW(6) - INTERVAL 30 DAY), "
            "(2, 'c2', 'q', NOW(6) - INTERVAL 30 DAY)"
        )
        cur.execute("CREATE TABLE b (id int primary key, note varchar(20))")
        cur.execute("INSERT INTO b VALUES (1, 'x')")
        cur.execute("DROP USER IF EXISTS 'failure_tester'@'%'")
        cur.execute("CREATE USER 'failure_tester'@'%%' IDENTIFIED BY %s", [SECRET])
        cur.execute(f"GRANT ALL ON `{scratch_db}`.* TO 'failure_tester'@'%'")  # '%' literal
    source = mysql_source(mysql_server, scratch_db, [A, B])
    source.update(mysql_username="failure_tester", mysql_password=SECRET)
    path = write_settings(
        tmp_path / "s.yaml", local_datalake(tmp_path / f"lake-{SECRET}"), [source]
    )
    for args in (
        ["create-datalake-tables", "--all"],
        ["create-datalake-views", "--all"],
        ["extract-and-load", "--all", "--force"],
    ):
        code, out = finish(panorama(path, *args))
        assert code == 0, out
    yield path
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'failure_tester'@'%'")


def lake_of(settings: Path) -> Path:
    return settings.parent / f"lake-{SECRET}"


def catalog_of_a(settings: Path) -> list[tuple[Any, ...]]:
    db = duckdb.connect(str(lake_of(settings) / "panorama.duckdb"), read_only=True)
    try:
        return sorted(
            db.execute(
                "SELECT file, vals FROM panorama_partitions WHERE raw_table = 'openedx_raw_a'"
            ).fetchall()
        )
    finally:
        db.close()


def rows_of_b(settings: Path) -> list[tuple[Any, ...]]:
    db = duckdb.connect(str(lake_of(settings) / "panorama.duckdb"), read_only=True)
    try:
        return sorted(db.execute("SELECT id, note FROM openedx_table_b").fetchall())
    finally:
        db.close()


def mark_of_a(settings: Path) -> str:
    state = lake_of(settings) / "openedx/_panorama_state/openedx_raw_a/lms=lms.example.com"
    return json.loads((state / "state.json").read_text())["mark"]


def test_a_duckdb_error_fails_its_table_alone(
    settings: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    lake = lake_of(settings)
    # An operator deletes one partition's file by hand: the catalog still lists it, and DuckDB
    # refuses to define the raw table over a missing file when a new partition comes.
    gone = lake / "openedx/a/lms=lms.example.com/course_id=c1/a.csv"
    gone.unlink()
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO a VALUES (3, 'c9', 'r', NOW(6))")
        cur.execute("INSERT INTO b VALUES (2, 'y')")
    registered, mark = catalog_of_a(settings), mark_of_a(settings)
    masked_file = str(gone).replace(SECRET, "***")

    code, out = finish(panorama(settings, "extract-and-load", "--all"))
    assert code == 1, out
    (failed,) = [line for line in out.splitlines() if line.startswith("a ")]
    assert failed.endswith(
        f'FAILED: DuckDB: IO Error: No files found that match the pattern "{masked_file}"'
    )
    assert "1 of 2 tables failed: a" in out
    assert "Traceback" not in out
    # b, after a, loaded its new row; a registered nothing and kept its mark.
    assert rows_of_b(settings) == [(1, "x"), (2, "y")]
    assert catalog_of_a(settings) == registered
    assert mark_of_a(settings) == mark

    # With --debug the same failure prints its traceback, masked like every line.
    code, out = finish(panorama(settings, "--debug", "extract-and-load", "--all"))
    assert code == 1, out
    assert "Traceback (most recent call last)" in out
    assert f'No files found that match the pattern "{masked_file}"' in out
    assert SECRET not in out


def test_an_unexpected_exception_fails_its_table_alone(
    settings: Path, mysql_server: dict[str, Any], scratch_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library error no plugin wrapped (injected: a raw DuckDB call in a's registration)."""
    missing = lake_of(settings) / "no-such-file.csv"
    register = LocalDatalake.add_partitions

    def unwrapped(self: LocalDatalake, table: Any, partitions: Any) -> None:
        if table.name == "a":
            self.db.execute("SELECT * FROM read_csv(?)", [str(missing)])  # raises, unwrapped
        register(self, table, partitions)

    monkeypatch.setattr(LocalDatalake, "add_partitions", unwrapped)
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO a VALUES (3, 'c9', 'r', NOW(6))")
        cur.execute("INSERT INTO b VALUES (2, 'y')")

    result = CliRunner().invoke(
        main, ["--settings", str(settings), "extract-and-load", "--all"], catch_exceptions=False
    )
    out = result.output
    assert result.exit_code == 1, out
    masked = str(missing).replace(SECRET, "***")
    assert (
        "a: failed: unexpected _duckdb.IOException: IO Error: No files found that match the "
        f'pattern "{masked}"'
    ) in out
    # A bug shows its traceback even without --debug; the traceback is masked too.
    assert "Traceback (most recent call last)" in out
    assert 'self.db.execute("SELECT * FROM read_csv(?)", [str(missing)])' in out
    assert SECRET not in out
    assert "1 of 2 tables failed: a" in out
    assert rows_of_b(settings) == [(1, "x"), (2, "y")]
