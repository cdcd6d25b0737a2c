"""The fast path against a real MariaDB: unordered scans grouped by the writer, rows parsed off
the wire, packed batch encoding, and big tables read as two halves by two processes.

In-process tests lower ``SHARD_BYTES`` (the parent decides the split; the second process only
reads the half it is given) and spy on both halves; the failure tests run ``panorama.py`` as a
real process tree over a table big enough (by InnoDB's own estimate) to be split for real.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from panorama_elt import progress as progress_module
from panorama_elt import runner as runner_module
from panorama_elt import shards as shards_module
from panorama_elt import writer as writer_module
from panorama_elt.datalakes.local import read_csv_sql
from panorama_elt.datasources import mysql as mysql_module
from panorama_elt.datasources import mysql_wire
from panorama_elt.settings import Settings, TableSettings, load_settings
from tests.conftest import (
    ROOT,
    connect,
    local_datalake,
    mysql_source,
    template_tables,
    write_settings,
)
from tests.opencsv import read_records
from tests.test_encoding import AWKWARD
from tests.test_end_to_end import assert_same_rows, cli, source_rows, view_rows
from tests.test_reliability import finish, panorama

# ---------------------------------------------------------------------------------------------
# Helpers


class SplitSpy:
    """What the parent process read and what the second process reported, per table."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget what earlier runs did."""
        self.parent_queries: dict[str, list[tuple[str, list[Any]]]] = defaultdict(list)
        self.shard_queries: dict[str, list[tuple[str, list[Any]]]] = defaultdict(list)
        self.shard_files: dict[str, list[writer_module.PartitionFile]] = defaultdict(list)

    def middle(self, table: str) -> int:
        ((sql, params),) = self.shard_queries[table]
        return int(params[-1])

    def shard_rows(self, table: str) -> int:
        return sum(part.rows for part in self.shard_files[table])


@pytest.fixture
def split_everything(monkeypatch: pytest.MonkeyPatch) -> SplitSpy:
    """Every table with a single integer primary key is split (threshold: 1 byte), and spied on.

    The spies live in this process only: the second process is a fresh interpreter running the
    product's own ``panorama_elt.shards.main``.
    """
    monkeypatch.setattr(mysql_module, "SHARD_BYTES", 1)
    # A tiny pending-rows budget: the parent appends to its partition files after every batch.
    monkeypatch.setattr(writer_module, "PENDING_BYTES", 2048)
    spy = SplitSpy()
    stream = mysql_module.MySQLDatasource._stream
    init = shards_module.ShardProcesses.__init__
    results = shards_module.ShardProcesses.results

    def spy_stream(self: Any, table: TableSettings, sql: str, params: list[Any]) -> Any:
        spy.parent_queries[table.name].append((sql, list(params)))
        return stream(self, table, sql, params)

    def spy_init(self: Any, shards: Any, table: TableSettings, *args: Any) -> None:
        init(self, shards, table, *args)
        for shard in shards:
            _settings, shard_table, sql, params = shard.args
            spy.shard_queries[shard_table.name].append((sql, list(params)))

    def spy_results(self: Any) -> Any:
        found = results(self)
        for parts in found:
            spy.shard_files[self.table.name].extend(parts.values())
        return found

    monkeypatch.setattr(mysql_module.MySQLDatasource, "_stream", spy_stream)
    monkeypatch.setattr(shards_module.ShardProcesses, "__init__", spy_init)
    monkeypatch.setattr(shards_module.ShardProcesses, "results", spy_results)
    return spy


def scalar(server: dict[str, Any], database: str, sql: str, params: Any = ()) -> Any:
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def assert_split(
    spy: SplitSpy, server: dict[str, Any], database: str, table: str, where: str = "TRUE"
) -> None:
    """The table (its rows matching ``where``) was read as two halves by its primary key `id`,
    the upper half by the other process, which wrote exactly those rows."""
    key = "id"
    assert spy.shard_queries[table], f"{table} was not split"
    middle = spy.middle(table)
    ((low_sql, low_params),) = spy.parent_queries[table]
    ((high_sql, _),) = spy.shard_queries[table]
    assert low_sql.endswith(f"`{key}` <= %s") and low_params[-1] == middle, low_sql
    assert high_sql.endswith(f"`{key}` > %s"), high_sql
    count = f"SELECT COUNT(*) FROM `{table}` WHERE ({where})"
    upper = scalar(server, database, f"{count} AND `{key}` > %s", [middle])
    total = scalar(server, database, count)
    assert 0 < upper < total
    assert spy.shard_rows(table) == upper, f"{table}: the second process wrote the wrong rows"


def load(settings_file: Path, *extra: str, code: int = 0) -> Any:
    """create-datalake-tables, create-datalake-views, extract-and-load --all (in process)."""
    for command in (["create-datalake-tables", "--all"], ["create-datalake-views", "--all"]):
        result = cli(settings_file, *command)
        assert result.exit_code == 0, result.output
    result = cli(settings_file, "extract-and-load", "--all", *extra)
    assert result.exit_code == code, result.output
    return result


def data_files(settings: Settings, table: TableSettings) -> list[Path]:
    lake = settings.datalake
    assert lake.path is not None and lake.base_prefix is not None
    root = lake.path / lake.base_prefix / table.name
    return sorted(root.rglob(f"{table.name}.csv*"))


def file_text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")


def file_records(path: Path) -> list[list[str]]:
    return read_records(file_text(path))


def assert_readers_agree(settings: Settings, table: TableSettings) -> None:
    """DuckDB's CSV reader and an OpenCSVSerde reader give the same records for every file."""
    columns = [f.name for f in table.file_fields]
    for path in data_files(settings, table):
        duck = (
            duckdb.connect()
            .execute(f"SELECT * EXCLUDE (panorama_file) FROM {read_csv_sql([str(path)], columns)}")
            .fetchall()
        )
        text = file_text(path)
        assert text.count("\n") == len(duck) + 1, f"{path}: not one record per line"
        assert text.startswith('"' + '","'.join(columns) + '"\n')
        assert text.count('"' + '","'.join(columns) + '"\n') == 1, f"{path}: a second header"
        assert read_records(text) == [list(r) for r in duck], path


# ---------------------------------------------------------------------------------------------
# 1. A forced split in two processes: the typed views equal SELECT on the source


def test_openedx_tables_split_in_two_processes_match_the_source(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    openedx_db: str,
    split_everything: SplitSpy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted: dict[str, int] = {}

    class CountingProgress(progress_module.Progress):
        def done(self) -> None:
            counted[self.table] = self.rows
            super().done()

    monkeypatch.setattr(runner_module, "Progress", CountingProgress)
    source = mysql_source(mysql_server, openedx_db, template_tables(), name="openedx_mysql")
    settings_file = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    load(settings_file, "--force")
    settings = load_settings(settings_file)
    split = set(split_everything.shard_queries)
    # Partitioned by course, and plain tables (auth_user also has zero dates).
    assert {"courseware_studentmodule", "auth_user", "student_courseenrollment"} <= split
    for name in split:
        assert_split(split_everything, mysql_server, openedx_db, name)
    for table in settings.tables:
        expected = source_rows(mysql_server, openedx_db, table)
        assert_same_rows(expected, view_rows(settings, table), table.name)
        # The progress line counted the rows of both processes.
        assert counted[table.name] == len(expected), table.name
    studentmodule = next(t for t in settings.tables if t.name == "courseware_studentmodule")
    assert len(data_files(settings, studentmodule)) == 8


AWK_PARTS = [None, "A", "a", "a ", "", "course-v1:Org+X+1", "😀 é", "\\N", 'it\'s "q"']
AWK_FIELDS = [
    {"name": "id", "type": "int(11)"},
    {"name": "part", "type": "varchar(20)"},
    {"name": "body", "type": "longtext"},
    {"name": "note", "type": "varchar(40)"},
    {"name": "created", "type": "datetime(6)"},
]


def create_awkward(server: dict[str, Any], database: str) -> int:
    """Tables `awk` and `awk_flat`: every awkward text, NULL and case-variant partition values,
    zero dates, ids from negative to large; returns the number of zero-date rows."""
    rows = []
    zero = 0
    for i in range(len(AWKWARD) * 3):
        created: str | None = "2024-02-29 12:34:56.789012"
        if i % 5 == 0:
            created = "0000-00-00 00:00:00"
            zero += 1
        elif i % 5 == 1:
            created = None
        note = AWKWARD[(i * 7) % len(AWKWARD)]
        rows.append(
            (
                i * 37 - 500,
                AWK_PARTS[i % len(AWK_PARTS)],
                AWKWARD[i % len(AWKWARD)],
                note if note is None else note[:40],
                created,
            )
        )
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE awk (id int PRIMARY KEY, part varchar(20), body longtext, "
            "note varchar(40), created datetime(6), KEY (part)) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        )
        cur.executemany("INSERT INTO awk VALUES (%s, %s, %s, %s, %s)", rows)
        cur.execute("CREATE TABLE awk_flat LIKE awk")
        cur.execute("INSERT INTO awk_flat SELECT * FROM awk")
    return zero


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_split_awkward_values_partitioned_and_not(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    scratch_db: str,
    split_everything: SplitSpy,
    monkeypatch: pytest.MonkeyPatch,
    compression: str | None,
) -> None:
    # Small socket reads: many batches, rows cut across reads, 100 kB values read whole.
    monkeypatch.setattr(mysql_wire, "READ_BYTES", 1 << 10)
    zero_dates = create_awkward(mysql_server, scratch_db)
    tables: list[dict[str, Any]] = [
        {"name": "awk", "partitions": {"partition_fields": ["part"]}, "fields": AWK_FIELDS},
        {"name": "awk_flat", "fields": AWK_FIELDS},
    ]
    extra = {"compression": compression} if compression else {}
    settings_file = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake", **extra),
        [mysql_source(mysql_server, scratch_db, tables)],
    )
    load(settings_file, "--results-file", str(tmp_path / "r.json"))
    settings = load_settings(settings_file)
    summary = {t["table"]: t for t in json.loads((tmp_path / "r.json").read_text())["tables"]}
    for table in settings.tables:
        assert_split(split_everything, mysql_server, scratch_db, table.name)
        assert_same_rows(
            source_rows(mysql_server, scratch_db, table), view_rows(settings, table), table.name
        )
        # Zero dates of both halves are counted.
        assert summary[table.name]["zero_dates"] == zero_dates
        files = data_files(settings, table)
        suffix = ".csv.gz" if compression else ".csv"
        assert files and all(p.name == table.name + suffix for p in files)
        assert_readers_agree(settings, table)
    awk = settings.tables[0]
    # NULL, '' and 'A' / 'a' / 'a ' (equal in the source's collation) are partitions apart.
    assert len(data_files(settings, awk)) == len(AWK_PARTS)
    assert summary["awk"]["partitions_written"] == len(AWK_PARTS)


# ---------------------------------------------------------------------------------------------
# 3. Values through the packed path


def test_constant_fields_and_multi_field_partitions_with_nulls(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str, split_everything: SplitSpy
) -> None:
    """Constant fields (NULL, 'x,"y', a backslash and a newline) between the columns read, and
    two partition fields telling NULL from '' in every combination, in both processes; then an
    incremental run whose NULL-safe filter re-reads exactly the changed partitions."""
    combos = [(None, None), ("o", None), (None, "o"), ("o", "o"), ("", None), (None, ""), ("", "")]
    combos.append(("O", "o"))  # equal to ('o', 'o') in the collation, a partition of its own
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE multi (id int PRIMARY KEY, org varchar(8), run varchar(8), "
            "v varchar(20), modified datetime(6))"
        )
        cur.executemany(
            "INSERT INTO multi VALUES (%s, %s, %s, %s, NOW(6) - INTERVAL 30 DAY)",
            [
                (i, *combos[i % len(combos)], None if i % 4 == 0 else f'v"{i},\\')
                for i in range(1, 81)
            ],
        )
    constants = [
        {"name": "c_null", "type": "varchar(10)", "value": None},
        {"name": "c_quote", "type": "varchar(10)", "value": 'x,"y'},
        {"name": "c_text", "type": "varchar(20)", "value": "back\\slash\nline"},
    ]
    fields = [
        constants[0],
        {"name": "id", "type": "int(11)"},
        {"name": "org", "type": "varchar(8)"},
        constants[1],
        {"name": "run", "type": "varchar(8)"},
        {"name": "v", "type": "varchar(20)"},
        constants[2],
        {"name": "modified", "type": "datetime(6)"},
    ]
    partitions = {
        "partition_fields": ["org", "run"],
        "timestamp_field": "modified",
        "interval": "2 hour",
    }
    tables: list[dict[str, Any]] = [
        {"name": "multi", "partitions": partitions, "fields": fields},
        {"name": "multi_flat", "fields": fields},
    ]
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE multi_flat AS SELECT * FROM multi")
        cur.execute("ALTER TABLE multi_flat ADD PRIMARY KEY (id)")
    settings_file = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, scratch_db, tables)],
    )
    load(settings_file, "--force", "--results-file", str(tmp_path / "r.json"))
    settings = load_settings(settings_file)

    def check() -> None:
        for table in settings.tables:
            assert_same_rows(
                source_rows(mysql_server, scratch_db, table),
                view_rows(settings, table),
                table.name,
            )
            assert_readers_agree(settings, table)

    check()
    for table in ("multi", "multi_flat"):
        assert_split(split_everything, mysql_server, scratch_db, table)
    multi = settings.tables[0]
    assert len(data_files(settings, multi)) == len(combos)
    # The catalog tells NULL from '' in every field.
    db = duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True)
    try:
        registered = {
            tuple(r[0][1:])
            for r in db.execute(
                "SELECT vals FROM panorama_partitions WHERE raw_table = 'openedx_raw_multi'"
            ).fetchall()
        }
    finally:
        db.close()
    assert registered == {tuple("\\N" if v is None else v for v in c) for c in combos}

    # Incremental: rows of the (NULL, NULL) and ('', NULL) partitions change; the NULL-safe
    # filter re-reads exactly those partitions, still in two halves.
    split_everything.reset()
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE multi SET v = CONCAT('new\\r\\n', id), modified = NOW(6) "
            "WHERE (org IS NULL AND run IS NULL) OR (org = '' AND run IS NULL)"
        )
    result = cli(
        settings_file,
        "extract-and-load",
        "--tables",
        "multi",
        "--results-file",
        str(tmp_path / "r.json"),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())["tables"][0]
    assert summary["mode"] == "incremental" and summary["partitions_written"] == 2
    changed = "(org IS NULL AND run IS NULL) OR (org = '' AND run IS NULL)"
    assert_split(split_everything, mysql_server, scratch_db, "multi", changed)
    assert_same_rows(
        source_rows(mysql_server, scratch_db, multi), view_rows(settings, multi), "multi"
    )


@pytest.mark.parametrize("split", [False, True], ids=["one-process", "split"])
def test_binary_and_bit_partition_fields(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    scratch_db: str,
    monkeypatch: pytest.MonkeyPatch,
    split: bool,
) -> None:
    """A varbinary or bit partition field shows the source's bytes / number in the typed view,
    even when the bytes look like hex or are not UTF-8; stable across runs and incremental."""
    if split:
        monkeypatch.setattr(mysql_module, "SHARD_BYTES", 1)
    keys = [b"ab", b"\x00\x01", b"\xff\xfe", None, b"", b"a/b", b"\\N"]
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE bin (id int PRIMARY KEY, k varbinary(8), f bit(8), v varchar(10), "
            "modified datetime(6))"
        )
        cur.executemany(
            "INSERT INTO bin VALUES (%s, %s, %s, %s, NOW(6) - INTERVAL 30 DAY)",
            [(i, keys[i % len(keys)], bytes([i % 3]), f"v{i}") for i in range(1, 30)],
        )
    fields = [
        {"name": "id", "type": "int(11)"},
        {"name": "k", "type": "varbinary(8)"},
        {"name": "f", "type": "bit(8)"},
        {"name": "v", "type": "varchar(10)"},
        {"name": "modified", "type": "datetime(6)"},
    ]
    tables = [
        {
            "name": "bin",
            "partitions": {
                "partition_fields": ["k", "f"],
                "timestamp_field": "modified",
                "interval": "2 hour",
            },
            "fields": fields,
        }
    ]
    settings_file = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, scratch_db, tables)],
    )
    results_file = str(tmp_path / "r.json")
    load(settings_file, "--force", "--results-file", results_file)
    settings = load_settings(settings_file)
    table = settings.tables[0]
    assert_same_rows(
        source_rows(mysql_server, scratch_db, table), view_rows(settings, table), "bin"
    )
    partitions = len(keys) * 3
    assert len(data_files(settings, table)) == partitions
    # The same partitions again: nothing new to register, nothing removed.
    result = cli(
        settings_file, "extract-and-load", "--all", "--force", "--results-file", results_file
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())["tables"][0]
    assert (summary["partitions_written"], summary["partitions_registered"]) == (partitions, 0)
    assert summary["partitions_removed"] == 0
    # Incremental: the changed partitions are found by their binary values.
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("UPDATE bin SET v = 'changed', modified = NOW(6) WHERE k = %s", [b"\xff\xfe"])
    result = cli(settings_file, "extract-and-load", "--all", "--results-file", results_file)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())["tables"][0]
    assert (summary["mode"], summary["partitions_written"]) == ("incremental", 3)
    assert summary["partitions_registered"] == 0
    assert_same_rows(
        source_rows(mysql_server, scratch_db, table), view_rows(settings, table), "bin"
    )


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"ok\xc3("], ids=["marker-bytes", "broken-sequence"])
@pytest.mark.parametrize("where", ["first-half", "second-half", "partition-value"])
def test_text_that_is_not_utf8_fails_its_table_only(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    scratch_db: str,
    split_everything: SplitSpy,
    bad: bytes,
    where: str,
) -> None:
    """A varbinary column the settings call varchar: one clear error naming the table, from
    whichever process read the value; the other tables still load; exit code 1."""
    rows = [(i, b"p%d" % (i % 2), b"v%d" % i) for i in range(1, 11)]
    row = {"first-half": 2, "second-half": 7, "partition-value": 8}[where]
    if where == "partition-value":
        rows[row] = (row + 1, bad, b"fine")
    else:
        rows[row] = (row + 1, b"p1", bad)
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE bad (id int PRIMARY KEY, part varbinary(10), v varbinary(10))")
        cur.executemany("INSERT INTO bad VALUES (%s, %s, %s)", rows)
        cur.execute("CREATE TABLE good (id int PRIMARY KEY, v varchar(10))")
        cur.execute("INSERT INTO good SELECT seq, CONCAT('g', seq) FROM seq_1_to_20")
    text = [
        {"name": "id", "type": "int(11)"},
        {"name": "part", "type": "varchar(10)"},
        {"name": "v", "type": "varchar(10)"},
    ]
    tables: list[dict[str, Any]] = [
        {"name": "bad", "partitions": {"partition_fields": ["part"]}, "fields": text},
        {"name": "good", "fields": [text[0], text[2]]},
    ]
    settings_file = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, scratch_db, tables)],
    )
    result = load(settings_file, "--results-file", str(tmp_path / "r.json"), code=1)
    out = result.output
    assert "Traceback" not in out
    summary = {t["table"]: t for t in json.loads((tmp_path / "r.json").read_text())["tables"]}
    assert summary["good"]["status"] == "ok"
    error = summary["bad"]["error"]
    assert summary["bad"]["status"] == "failed" and "\n" not in error
    assert error.startswith("bad: ") and "not valid UTF-8" in error
    if where == "partition-value":
        assert "partition value" in error
    (line,) = [line for line in out.splitlines() if line.startswith("bad ")]
    assert line.endswith(f"FAILED: {error}")
    assert "1 of 2 tables failed: bad" in out
    # The failed table left nothing behind; the good one is complete.
    settings = load_settings(settings_file)
    assert data_files(settings, settings.tables[0]) == []
    good = settings.tables[1]
    assert_split(split_everything, mysql_server, scratch_db, "good")
    assert_same_rows(source_rows(mysql_server, scratch_db, good), view_rows(settings, good), "good")


def test_partition_values_differing_in_case_or_trailing_space(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str, split_everything: SplitSpy
) -> None:
    """'A', 'a' and 'a ' are one value to the source's collation (and to its DISTINCT and IN) but
    three partitions, each with exactly its rows: after a full run and after an incremental run
    in which only 'a ' changed."""
    values = ["A", "a", "a ", "b"]
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE cases (id int PRIMARY KEY, part varchar(10), v varchar(20), "
            "modified datetime(6), KEY (part)) COLLATE utf8mb4_general_ci"
        )
        cur.executemany(
            "INSERT INTO cases VALUES (%s, %s, %s, NOW(6) - INTERVAL 30 DAY)",
            [(i, values[i % len(values)], f"old{i}") for i in range(1, 41)],
        )
    table = {
        "name": "cases",
        "partitions": {
            "partition_fields": ["part"],
            "timestamp_field": "modified",
            "interval": "2 hour",
        },
        "fields": [
            {"name": "id", "type": "int(11)"},
            {"name": "part", "type": "varchar(10)"},
            {"name": "v", "type": "varchar(20)"},
            {"name": "modified", "type": "datetime(6)"},
        ],
    }
    settings_file = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, scratch_db, [table])],
    )

    def check() -> None:
        settings = load_settings(settings_file)
        cases = settings.tables[0]
        view = view_rows(settings, cases)
        source = source_rows(mysql_server, scratch_db, cases)
        assert_same_rows(source, view, "cases")
        by_part: dict[str, set[int]] = defaultdict(set)
        for row in view:
            by_part[row[1]].add(row[0])
        assert set(by_part) == set(values)
        for n, value in enumerate(values):
            assert by_part[value] == set(range(n or len(values), 41, len(values))), value
        files = data_files(settings, cases)
        folders = sorted(p.parent.name for p in files)
        assert folders == ["part=A", "part=a", "part=a%20", "part=b"]
        for path in files:
            ids = [int(r[0]) for r in file_records(path)]
            assert ids == sorted(ids)

    load(settings_file, "--force")
    check()
    split_everything.reset()
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE cases SET v = CONCAT('new', id), modified = NOW(6) WHERE BINARY part = 'a '"
        )
    result = cli(
        settings_file, "extract-and-load", "--all", "--results-file", str(tmp_path / "r.json")
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())["tables"][0]
    # The collation makes 'a ' match 'A' and 'a' too: all three are rewritten, whole.
    assert (summary["mode"], summary["partitions_written"]) == ("incremental", 3)
    check()
    assert_split(split_everything, mysql_server, scratch_db, "cases", "part = 'a'")


# ---------------------------------------------------------------------------------------------
# 4. Rows in any order: files appended to many times, and scans through a covering index


@pytest.mark.parametrize("split", [False, True], ids=["one-process", "split"])
def test_partition_files_appended_to_many_times_hold_every_row(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    scratch_db: str,
    monkeypatch: pytest.MonkeyPatch,
    split: bool,
) -> None:
    """Rows inserted in random key order and interleaved across partitions, with a pending-rows
    budget small enough that each file is appended to many times: a full run and an incremental
    run (only the changed partitions, rewritten whole) both leave every row, once. No order of
    rows within a file is promised."""
    if split:
        monkeypatch.setattr(mysql_module, "SHARD_BYTES", 1)
    monkeypatch.setattr(writer_module, "PENDING_BYTES", 4096)
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE ordered (id bigint PRIMARY KEY, course varchar(20), body text, "
            "modified datetime(6), KEY (course))"
        )
        cur.execute(
            "INSERT INTO ordered SELECT (seq * 7919) MOD 4001, CONCAT('c', CRC32(seq) MOD 9), "
            "REPEAT('x', seq MOD 300), NOW(6) - INTERVAL 30 DAY FROM seq_1_to_4000 ORDER BY RAND(7)"
        )
    table = {
        "name": "ordered",
        "partitions": {
            "partition_fields": ["course"],
            "timestamp_field": "modified",
            "interval": "2 hour",
        },
        "fields": [
            {"name": "id", "type": "bigint(20)"},
            {"name": "course", "type": "varchar(20)"},
            {"name": "body", "type": "text"},
            {"name": "modified", "type": "datetime(6)"},
        ],
    }
    settings_file = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, scratch_db, [table])],
    )
    load(settings_file, "--force")
    settings = load_settings(settings_file)
    ordered = settings.tables[0]
    assert len(data_files(settings, ordered)) == 9
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE ordered SET modified = NOW(6) WHERE course IN ('c1', 'c5') AND id % 3 = 0"
        )
    result = cli(
        settings_file, "extract-and-load", "--all", "--results-file", str(tmp_path / "r.json")
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["tables"][0]["partitions_written"] == 2
    assert_same_rows(
        source_rows(mysql_server, scratch_db, ordered), view_rows(settings, ordered), "ordered"
    )


def test_a_table_read_through_a_covering_index_is_complete(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    """Without ORDER BY the server may read a table through a secondary index that covers every
    selected column (student_courseaccessrole's unique key does): every row still lands once."""
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE roles (id int PRIMARY KEY, user_id int, role varchar(20), "
            "UNIQUE KEY (user_id, role))"
        )
        cur.execute(
            "INSERT INTO roles SELECT seq, (seq * 7919) MOD 1000, 'staff' FROM seq_1_to_1000"
        )
        cur.execute("ANALYZE TABLE roles")
    table = {
        "name": "roles",
        "fields": [
            {"name": "id", "type": "int(11)"},
            {"name": "user_id", "type": "int(11)"},
            {"name": "role", "type": "varchar(20)"},
        ],
    }
    settings_file = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, scratch_db, [table])],
    )
    load(settings_file, "--force")
    settings = load_settings(settings_file)
    assert_same_rows(
        source_rows(mysql_server, scratch_db, settings.tables[0]),
        view_rows(settings, settings.tables[0]),
        "roles",
    )


# ---------------------------------------------------------------------------------------------
# 2. Failures during a real split: panorama.py as a process tree over a table that InnoDB's own
# size estimate puts over SHARD_BYTES.

BIG_ROWS = 70_000
BIG = {
    "name": "big",
    "partitions": {
        "partition_fields": ["course_id"],
        "timestamp_field": "modified",
        "interval": "2 hour",
    },
    "fields": [
        {"name": "id", "type": "int(11)"},
        {"name": "course_id", "type": "varchar(64)"},
        {"name": "payload", "type": "text"},
        {"name": "modified", "type": "datetime(6)"},
    ],
}


@pytest.fixture(scope="module")
def big(mysql_server: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ~95 MB table (7 partitions, one NULL), loaded once; the settings file is returned."""
    database = f"fp{os.getpid()}_big"
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    try:
        with connect(mysql_server, database) as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE big (id int PRIMARY KEY, course_id varchar(64), payload text, "
                "modified datetime(6), KEY (course_id))"
            )
            cur.execute(
                "INSERT INTO big SELECT seq, IF(seq MOD 7 = 0, NULL, "
                "CONCAT('course-v1:Org+C', seq MOD 7, '+Run')), "
                "REPEAT(CONCAT('x\"y,z\\\\ \\n', seq), 100), NOW(6) - INTERVAL 30 DAY "
                f"FROM seq_1_to_{BIG_ROWS}"
            )
            # Right after a bulk load InnoDB's persistent statistics may still say one page
            # (16 KiB), and no split would happen: refresh them, as the background would.
            cur.execute("ANALYZE TABLE big")
            cur.execute(
                "SELECT DATA_LENGTH FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'big'",
                [database],
            )
            (size,) = cur.fetchone()
        assert size >= mysql_module.SHARD_BYTES, f"big is only {size} bytes by InnoDB's estimate"
        folder = tmp_path_factory.mktemp("big")
        settings = write_settings(
            folder / "s.yaml",
            local_datalake(folder / "lake"),
            [mysql_source(mysql_server, database, [BIG])],
        )
        load(settings, "--force")
        yield settings
    finally:
        with connect(mysql_server) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")


def big_database(settings: Path) -> str:
    return yaml.safe_load(settings.read_text())["datasources"][0]["mysql_database"]


def wait_for_half(server: dict[str, Any], database: str, process: Any, half: str) -> int:
    """The connection id of one half's running SELECT on `big` ("low" or "high")."""
    operator = "<=" if half == "low" else ">"
    deadline = time.monotonic() + 30
    with connect(server) as conn, conn.cursor() as cur:
        while time.monotonic() < deadline and process.poll() is None:
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND INFO LIKE %s",
                [database, f"SELECT %FROM `big` WHERE `id` {operator} %"],
            )
            row = cur.fetchone()
            if row:
                return int(row[0])
            time.sleep(0.005)
    raise AssertionError(f"the {half} half's query never showed up")


def running_query(server: dict[str, Any], connection_id: int) -> str | None:
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", [connection_id]
        )
        row = cur.fetchone()
        return row[0] if row else None


def _proc(pid: str, name: str) -> bytes:
    try:
        return (Path("/proc") / pid / name).read_bytes()
    except OSError:  # gone, or not ours
        return b""


def shard_processes(*, parent: int | None = None, tmpdir: Path | None = None) -> list[int]:
    """Live shard processes (a /proc scan): children of ``parent``, or any whose environment
    has TMPDIR=``tmpdir`` (which they keep when they outlive their parent)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or b"panorama_elt.shards" not in _proc(entry.name, "cmdline"):
            continue
        stat = _proc(entry.name, "stat").decode()
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1]) if ")" in stat else None
        environ = _proc(entry.name, "environ").split(b"\0")
        mine = tmpdir is not None and f"TMPDIR={tmpdir}".encode() in environ
        if mine or (parent is not None and ppid == parent):
            found.append(int(entry.name))
    return found


def wait_for_child(process: Any) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        children = shard_processes(parent=process.pid)
        if children:
            (child,) = children
            return child
        time.sleep(0.005)
    raise AssertionError("no shard process was started")


def freeze_both_halves(
    process: Any, server: dict[str, Any], database: str
) -> tuple[int, dict[str, int]]:
    """Wait for the split, freezing each process (SIGSTOP) as soon as its half's query runs,
    so that neither half can finish: the second process's pid and both connection ids."""
    child = wait_for_child(process)
    halves = {"low": wait_for_half(server, database, process, "low")}
    os.kill(process.pid, signal.SIGSTOP)
    halves["high"] = wait_for_half(server, database, process, "high")
    os.kill(child, signal.SIGSTOP)
    for half, connection in halves.items():
        assert running_query(server, connection), f"the {half} half is not streaming"
    return child, halves


def lake_snapshot(settings: Path) -> dict[str, tuple[int, int]]:
    """Every file of the datalake but the DuckDB catalog: size and modification time."""
    lake = settings.parent / "lake"
    return {
        str(p.relative_to(lake)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in lake.rglob("*")
        if p.is_file() and ".duckdb" not in p.name
    }


def big_catalog(settings: Path) -> set[tuple[str, ...]]:
    db = duckdb.connect(str(settings.parent / "lake" / "panorama.duckdb"), read_only=True)
    try:
        return {tuple(r[0]) for r in db.execute("SELECT vals FROM panorama_partitions").fetchall()}
    finally:
        db.close()


def big_mark(settings: Path) -> str:
    (path,) = (settings.parent / "lake").glob("openedx/_panorama_state/**/state.json")
    return json.loads(path.read_text())["mark"]


def assert_big_complete(settings: Path, server: dict[str, Any], database: str) -> None:
    """The view equals the source: per partition (rows, ids, text length), every 500th row
    cell for cell, and every file whole (one header, a line end last)."""
    db = duckdb.connect(str(settings.parent / "lake" / "panorama.duckdb"), read_only=True)
    try:
        view = db.execute(
            "SELECT course_id, count(*), sum(id), sum(length(payload)) FROM openedx_table_big "
            "GROUP BY 1"
        ).fetchall()
        sample = db.execute(
            "SELECT id, course_id, payload, modified FROM openedx_table_big WHERE id % 500 = 0"
        ).fetchall()
    finally:
        db.close()
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT course_id, count(*), sum(id), sum(char_length(payload)) FROM big GROUP BY 1"
        )
        source = cur.fetchall()
        cur.execute("SELECT id, course_id, payload, modified FROM big WHERE id % 500 = 0")
        source_sample = cur.fetchall()
    assert sorted(((c, n, int(s), int(t)) for c, n, s, t in view), key=repr) == sorted(
        ((c, n, int(s), int(t)) for c, n, s, t in source), key=repr
    )
    assert len(sample) == BIG_ROWS // 500
    assert sorted(sample, key=repr) == sorted(source_sample, key=repr)
    files = list((settings.parent / "lake" / "openedx" / "big").rglob("big.csv"))
    assert len(files) == 7
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\n") and data.count(b'"id","payload","modified"\n') == 1, path


def assert_failed_cleanly(
    settings: Path,
    out: str,
    child: int,
    private_tmp: Path,
    before: dict[str, tuple[int, int]],
    registered: set[tuple[str, ...]],
    old_mark: str,
) -> None:
    assert "Traceback" not in out, out
    assert not list((settings.parent / "lake").rglob("*.part")), "a partial upload is visible"
    assert not [p for p in private_tmp.iterdir() if p.name.startswith("panorama-")], (
        "temp files left behind"
    )
    # The parent stops and waits for its shard process: it may not outlive it, not even as a
    # zombie for init to reap, nor stay to finish its half.
    assert not (Path("/proc") / str(child)).exists(), "the shard process outlived the run"
    assert shard_processes(tmpdir=private_tmp) == [], "a shard process outlived the run"
    assert lake_snapshot(settings) == before, "the interrupted run changed the datalake's files"
    assert big_catalog(settings) == registered, "the interrupted run registered a partition"
    assert big_mark(settings) == old_mark, "the high-water mark moved"


def recover(settings: Path, server: dict[str, Any], private_tmp: Path, old_mark: str) -> None:
    code, out = finish(
        panorama(settings, "extract-and-load", "--all", "--force", env={"TMPDIR": str(private_tmp)})
    )
    assert code == 0, out
    assert big_mark(settings) > old_mark
    assert list(private_tmp.iterdir()) == []
    assert_big_complete(settings, server, big_database(settings))


def interrupted_run(
    big: Path, server: dict[str, Any], tmp_path: Path, interrupt: Any
) -> tuple[int, str, int, Path]:
    """Start a full run of `big`, freeze both halves, ``interrupt(process, child, halves)``,
    and let it end; exit code, output, the second process's pid and the run's TMPDIR."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    process = panorama(
        big, "extract-and-load", "--all", "--force", env={"TMPDIR": str(private_tmp)}
    )
    child = 0
    try:
        child, halves = freeze_both_halves(process, server, big_database(big))
        interrupt(process, child, halves)
        code, out = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        if child and child in shard_processes(tmpdir=private_tmp):
            os.kill(child, signal.SIGKILL)
    return code, out, child, private_tmp


def kill_connection(server: dict[str, Any], connection: int) -> None:
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute("KILL CONNECTION %s", [connection])


@pytest.mark.parametrize("half", ["high", "low"], ids=["second-process", "first-process"])
def test_connection_of_one_half_killed(
    big: Path, mysql_server: dict[str, Any], tmp_path: Path, half: str
) -> None:
    """KILL CONNECTION of one half's connection while it streams (the second process's, or
    the parent's): the table fails with one line, exit 1, nothing half-done, and the next run
    is complete."""
    before, registered, old_mark = lake_snapshot(big), big_catalog(big), big_mark(big)

    def interrupt(process: Any, child: int, halves: dict[str, int]) -> None:
        kill_connection(mysql_server, halves[half])
        os.kill(process.pid, signal.SIGCONT)
        if half == "high":
            os.kill(child, signal.SIGCONT)
        # else the second process stays frozen, as if stuck: the parent must stop it.

    code, out, child, private_tmp = interrupted_run(big, mysql_server, tmp_path, interrupt)
    assert code == 1, out
    (line,) = [line for line in out.splitlines() if line.startswith("big ")]
    assert "FAILED: big: Lost connection to MySQL server" in line, out
    assert "1 of 1 tables failed: big" in out
    assert_failed_cleanly(big, out, child, private_tmp, before, registered, old_mark)
    recover(big, mysql_server, private_tmp, old_mark)


@pytest.mark.parametrize("parent", ["streaming", "waiting"])
def test_sigterm_during_a_split(
    big: Path, mysql_server: dict[str, Any], tmp_path: Path, parent: str
) -> None:
    """SIGTERM to panorama.py while both processes stream their halves, or once the parent has
    read its half and waits for the second process: exit 143, the second process is stopped
    too, no temp files, nothing registered, and the next run is complete."""
    before, registered, old_mark = lake_snapshot(big), big_catalog(big), big_mark(big)
    halves: dict[str, int] = {}

    def interrupt(process: Any, child: int, running: dict[str, int]) -> None:
        halves.update(running)
        if parent == "waiting":
            os.kill(process.pid, signal.SIGCONT)
            # The line the parent logs once its own half is written, as it starts waiting.
            for line in process.stdout:
                if "waiting for 1 other reading process" in line:
                    break
            else:
                raise AssertionError("the parent never waited for the second process")
            assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        # The second process stays frozen (as if stuck on a slow server): the parent must stop
        # it, not wait for it.
        os.kill(process.pid, signal.SIGCONT)

    code, out, child, private_tmp = interrupted_run(big, mysql_server, tmp_path, interrupt)
    assert code == 128 + signal.SIGTERM, out
    assert_failed_cleanly(big, out, child, private_tmp, before, registered, old_mark)
    # The server let go of both halves' queries.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        running_query(mysql_server, c) for c in halves.values()
    ):
        time.sleep(0.05)
    assert not any(running_query(mysql_server, c) for c in halves.values())
    recover(big, mysql_server, private_tmp, old_mark)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    stat = _proc(str(pid), "stat").decode()
    return bool(stat) and stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def connections_to(server: dict[str, Any], database: str) -> list[int]:
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            [database],
        )
        return [int(row[0]) for row in cur.fetchall()]


def test_parent_killed_the_second_process_stops_and_leaves_nothing(
    big: Path, mysql_server: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL (as the out-of-memory killer sends) to panorama.py while both halves stream: the
    second process stops by itself within seconds, closes its MySQL connection and removes every
    temp file (its own and the dead parent's); the lake is untouched; the next run is complete."""
    before, registered, old_mark = lake_snapshot(big), big_catalog(big), big_mark(big)
    database = big_database(big)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    process = panorama(
        big, "extract-and-load", "--all", "--force", env={"TMPDIR": str(private_tmp)}
    )
    child = 0
    try:
        child = wait_for_child(process)
        high = wait_for_half(mysql_server, database, process, "high")
        assert running_query(mysql_server, high), "the second half is not streaming"
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        # Bounded waits for what must happen by itself, not assumptions about how long it takes.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            alive(child) or connections_to(mysql_server, database)
        ):
            time.sleep(0.05)
        assert not alive(child), "the second process outlived its killed parent"
        assert connections_to(mysql_server, database) == [], "a MySQL connection stayed open"
        assert list(private_tmp.iterdir()) == [], "temp files left behind"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        if child and alive(child):
            os.kill(child, signal.SIGKILL)
    assert lake_snapshot(big) == before, "the killed run changed the datalake's files"
    assert big_catalog(big) == registered, "the killed run registered a partition"
    assert big_mark(big) == old_mark, "the high-water mark moved"
    recover(big, mysql_server, private_tmp, old_mark)


# ---------------------------------------------------------------------------------------------
# 5. The wire reader is a fast path: pymysql's public cursor API writes the same bytes


def lake_files(lake: Path) -> dict[str, bytes]:
    """Every data file of a local datalake, by its path in the lake (but the built-in country
    codes table, which create-datalake-tables loads from a file, not from MySQL)."""
    return {
        str(p.relative_to(lake)): p.read_bytes()
        for p in sorted(lake.rglob("*"))
        if p.is_file()
        and (p.name.endswith(".csv") or p.name.endswith(".csv.gz"))
        and "country_codes" not in p.parts
    }


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_public_cursor_path_writes_the_same_bytes(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    scratch_db: str,
    monkeypatch: pytest.MonkeyPatch,
    compression: str | None,
) -> None:
    """Awkward text, NULL and case-variant partitions, zero dates, constants, binary and BIT
    columns, read in two processes: the fast path and the public SSCursor path (forced through
    the environment, which the second process inherits) write byte-identical files, and the
    public path says so in one log line."""
    create_awkward(mysql_server, scratch_db)
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE bin (id int PRIMARY KEY, part varbinary(4), b varbinary(8), f bit(10), "
            "t varchar(10))"
        )
        cur.executemany(
            "INSERT INTO bin VALUES (%s, %s, %s, b'1010101010', %s)",
            [(i, bytes([i % 3, 255]), bytes([0, i % 256, 0xFE]), f"t{i}") for i in range(1, 300)],
        )
    binary_fields = [
        {"name": "id", "type": "int(11)"},
        {"name": "part", "type": "varbinary(4)"},
        {"name": "b", "type": "varbinary(8)"},
        {"name": "f", "type": "bit(10)"},
        {"name": "fixed", "type": "varchar(10)", "value": 'x,"y'},
        {"name": "t", "type": "varchar(10)"},
    ]
    tables: list[dict[str, Any]] = [
        {"name": "awk", "partitions": {"partition_fields": ["part"]}, "fields": AWK_FIELDS},
        {
            "name": "awk_flat",
            "fields": [*AWK_FIELDS, {"name": "gone", "type": "text", "value": None}],
        },
        {"name": "bin", "partitions": {"partition_fields": ["part"]}, "fields": binary_fields},
    ]
    monkeypatch.setattr(mysql_module, "SHARD_BYTES", 1)
    extra = {"compression": compression} if compression else {}
    lakes = {}
    for path in ("fast", "public"):
        if path == "public":
            monkeypatch.setenv(mysql_wire.FAST_PATH_SWITCH, "0")
        settings_file = write_settings(
            tmp_path / f"{path}.yaml",
            local_datalake(tmp_path / path, **extra),
            [mysql_source(mysql_server, scratch_db, tables)],
        )
        output = load(settings_file).output
        said = [line for line in output.splitlines() if "public cursor API" in line]
        if path == "fast":
            assert said == [], output
        else:
            (line,) = said
            assert line.endswith(
                "reading MySQL rows through pymysql's public cursor API: "
                "PANORAMA_MYSQL_FAST_PATH is off"
            )
        lakes[path] = lake_files(tmp_path / path)
        settings = load_settings(settings_file)
        for table in settings.tables:
            assert_same_rows(
                source_rows(mysql_server, scratch_db, table), view_rows(settings, table), table.name
            )
    assert len(lakes["fast"]) == len(AWK_PARTS) + 1 + 3
    assert lakes["public"] == lakes["fast"]


def test_another_pymysql_version_reads_every_table(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str
) -> None:
    """panorama.py with PyMySQL 1.1.1 first on its path (the wheel `make test` downloads; pure
    Python, so importable as it is): one line says rows go through the public cursor API, and
    every table of the template equals the source."""
    wheels = sorted((ROOT / "build" / "wheels").glob("PyMySQL-1.1.1-*.whl"))
    assert wheels, "build/wheels/PyMySQL-1.1.1-*.whl is missing: run `make test`"
    source = mysql_source(mysql_server, openedx_db, template_tables(), name="openedx_mysql")
    settings_file = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    env = {"PYTHONPATH": str(wheels[-1])}
    for command in (["create-datalake-tables", "--all"], ["create-datalake-views", "--all"]):
        code, out = finish(panorama(settings_file, *command, env=env))
        assert code == 0, out
    code, out = finish(panorama(settings_file, "extract-and-load", "--all", "--force", env=env))
    assert code == 0, out
    said = [line for line in out.splitlines() if "public cursor API" in line]
    assert len(said) == 1 and "pymysql 1.1.1 is not a version" in said[0], out
    settings = load_settings(settings_file)
    for table in settings.tables:
        assert_same_rows(
            source_rows(mysql_server, openedx_db, table), view_rows(settings, table), table.name
        )
