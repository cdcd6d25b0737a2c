"""Unattended hourly runs: killed runs lose nothing, overlaps exit, secrets stay secret, bad input is one line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from panorama_elt.lock import run_lock
from tests.conftest import ROOT, connect, local_datalake, mysql_source, write_settings
from tests.opencsv import read_records
from tests.test_settings import CASES as SETTINGS_CASES

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
        {"name": "payload", "type": "varchar(200)"},
        {"name": "modified", "type": "datetime(6)"},
    ],
}


def panorama(settings: Path, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    command = [sys.executable, str(ROOT / "panorama.py"), "--settings", str(settings), *args]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def finish(process: Any, timeout: float = 120) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def fill(server: dict[str, Any], database: str, first: int, last: int, courses: int) -> None:
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS big (id int primary key, course_id varchar(64), "
            "payload varchar(200), modified datetime(6), KEY (course_id))"
        )
        cur.execute(
            "INSERT INTO big SELECT seq, CONCAT('course-v1:Org+C', seq MOD %s, '+Run'), "
            f"REPEAT('x\"y,z\\\\', 20), NOW(6) - INTERVAL 30 DAY FROM seq_{first}_to_{last}",
            [courses],
        )


@pytest.fixture
def big_settings(tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str) -> Path:
    fill(mysql_server, scratch_db, 1, 2000, 10)
    settings = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, scratch_db, [BIG])],
    )
    for args in (
        ["create-datalake-tables", "--all"],
        ["create-datalake-views", "--all"],
        ["extract-and-load", "--all", "--force"],
    ):
        code, out = finish(panorama(settings, *args))
        assert code == 0, out
    # Grow the table so the next full run takes a few seconds.
    fill(mysql_server, scratch_db, 2001, 700_000, 30)
    return settings


def catalog(settings: Path) -> set[tuple[str, ...]]:
    db = duckdb.connect(str(settings.parent / "lake" / "panorama.duckdb"), read_only=True)
    try:
        return {tuple(r[0]) for r in db.execute("SELECT vals FROM panorama_partitions").fetchall()}
    finally:
        db.close()


def mark(settings: Path) -> str:
    (path,) = (settings.parent / "lake").glob("openedx/_panorama_state/**/state.json")
    return json.loads(path.read_text())["mark"]


def wait_for_query(
    server: dict[str, Any],
    database: str,
    column: str = "INFO",
    pattern: str = "SELECT `course_id`, `id`%FROM `big`%",
    timeout: float = 60,
) -> int:
    """The connection id of the tool's query whose PROCESSLIST ``column`` is LIKE ``pattern``.

    By default its running SELECT on `big`; with STATE, a query waiting in a given state.
    """
    deadline = time.monotonic() + timeout
    with connect(server) as conn, conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                f"SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND {column} LIKE %s",
                [database, pattern],
            )
            row = cur.fetchone()
            if row:
                return int(row[0])
            time.sleep(0.05)
    raise AssertionError(f"no query with {column} like {pattern!r} showed up")


def assert_nothing_half_done(
    settings: Path, registered: set[tuple[str, ...]], old_mark: str
) -> None:
    lake = settings.parent / "lake"
    assert not list(lake.rglob("*.part")), "a partial upload is visible"
    for path in lake.rglob("*.csv"):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")
        read_records(text)  # every line parses: no torn record
    assert catalog(settings) == registered, "a partition was registered by the interrupted run"
    assert mark(settings) == old_mark, "the high-water mark moved"


def assert_complete(settings: Path, server: dict[str, Any], database: str) -> None:
    code, out = finish(panorama(settings, "extract-and-load", "--all", "--force"))
    assert code == 0, out
    db = duckdb.connect(str(settings.parent / "lake" / "panorama.duckdb"), read_only=True)
    view = db.execute(
        "SELECT course_id, count(*), sum(id) FROM openedx_table_big GROUP BY 1"
    ).fetchall()
    db.close()
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute("SELECT course_id, count(*), sum(id) FROM big GROUP BY 1")
        source = cur.fetchall()
    assert sorted((c, n, int(s)) for c, n, s in view) == sorted(
        (c, n, int(s)) for c, n, s in source
    )


def test_connection_killed_mid_table(
    big_settings: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    registered, old_mark = catalog(big_settings), mark(big_settings)
    process = panorama(big_settings, "extract-and-load", "--all", "--force")
    connection_id = wait_for_query(mysql_server, scratch_db)
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute("KILL CONNECTION %s", [connection_id])
    code, out = finish(process)
    assert code == 1, out
    assert "big" in out and "FAILED" in out
    assert "Traceback" not in out
    assert_nothing_half_done(big_settings, registered, old_mark)
    assert_complete(big_settings, mysql_server, scratch_db)


def test_sigterm_mid_table(
    big_settings: Path, mysql_server: dict[str, Any], scratch_db: str, tmp_path: Path
) -> None:
    registered, old_mark = catalog(big_settings), mark(big_settings)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    process = panorama(
        big_settings, "extract-and-load", "--all", "--force", env={"TMPDIR": str(private_tmp)}
    )
    wait_for_query(mysql_server, scratch_db)
    # At once: the table takes seconds, so the run can never finish first.
    process.send_signal(signal.SIGTERM)
    code, out = finish(process)
    assert code == 128 + signal.SIGTERM, out
    assert not [
        p for p in private_tmp.iterdir() if p.name.startswith("panorama-") and p.is_dir()
    ], "temp files left behind"
    assert_nothing_half_done(big_settings, registered, old_mark)
    assert_complete(big_settings, mysql_server, scratch_db)


# Overlaps: one command that writes to the datalake at a time per settings file.

HOLD_LOCK = (
    "import sys\n"
    "from pathlib import Path\n"
    "from panorama_elt.lock import run_lock\n"
    "with run_lock(Path(sys.argv[1]), sys.argv[2]):\n"
    "    print('locked', flush=True)\n"
    "    sys.stdin.read()  # held until the test closes stdin\n"
)


@contextlib.contextmanager
def lock_held(settings: Path, command: str = "extract-and-load") -> Iterator[Any]:
    """A second process holding the run lock through the project's lock code, as ``command``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(settings), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
        holder.stdout.close()


def locked_line(settings: Path, holder: str, pid: int, command: str) -> str:
    """The one line a command prints when another holds the lock, written out by hand."""
    return (
        f"Error: another {holder} with {settings} is still running (pid {pid}); "
        f"{command} exits without touching anything"
    )


def test_overlapping_run_exits_at_once_without_touching_anything(
    tmp_path: Path, mysql_server: dict[str, Any]
) -> None:
    settings = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [
            mysql_source(
                mysql_server, "edxapp", [{"name": "t", "fields": [{"name": "id", "type": "int"}]}]
            )
        ],
    )
    with lock_held(settings) as holder:
        code, out = finish(panorama(settings, "extract-and-load", "--all"))
        # It did not wait for the lock: the holder still has it.
        assert holder.poll() is None
    assert code == 3, out
    assert out.strip() == locked_line(settings, "extract-and-load", holder.pid, "extract-and-load")
    assert not (tmp_path / "lake").exists()
    # The lock dies with its holder: the next run proceeds.
    with run_lock(settings, "extract-and-load"):
        pass


def lake_state(lake: Path) -> tuple[dict[str, bytes], list[Any], list[Any]]:
    """Every file's bytes (the DuckDB file too), the partition catalog and the view definitions."""
    files = {str(p.relative_to(lake)): p.read_bytes() for p in lake.rglob("*") if p.is_file()}
    db = duckdb.connect(str(lake / "panorama.duckdb"), read_only=True)
    try:
        partitions = sorted(db.execute("SELECT * FROM panorama_partitions").fetchall())
        views = sorted(
            db.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
        )
    finally:
        db.close()
    return files, partitions, views


COURSES = {
    "name": "courses",
    "partitions": {"partition_fields": ["course_id"]},
    "fields": [
        {"name": "id", "type": "int(11)"},
        {"name": "course_id", "type": "varchar(64)"},
        {"name": "grade", "type": "double"},
    ],
}


@pytest.fixture
def courses_settings(tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str) -> Path:
    """Settings of a local datalake over a three-row table `courses`, partitioned by course."""
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE courses (id int primary key, course_id varchar(64), grade double)"
        )
        cur.execute("INSERT INTO courses VALUES (1, 'c1', 0.5), (2, 'c2', 1), (3, 'c1', NULL)")
    return write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, scratch_db, [COURSES])],
    )


@pytest.mark.parametrize(
    "command", ["create-datalake-tables", "create-datalake-views", "drop-datalake-tables"]
)
def test_catalog_command_exits_while_a_run_holds_the_lock(
    courses_settings: Path, mysql_server: dict[str, Any], scratch_db: str, command: str
) -> None:
    lake = courses_settings.parent / "lake"
    settings = courses_settings
    for args in (
        ["create-datalake-tables", "--all"],
        ["create-datalake-views", "--all"],
        ["extract-and-load", "--all"],
    ):
        code, out = finish(panorama(settings, *args))
        assert code == 0, out
    # The layout changes: create-datalake-tables would delete the course partitions and their
    # files, create-datalake-views would replace the view, drop-datalake-tables drop both.
    unpartitioned = {k: v for k, v in COURSES.items() if k != "partitions"}
    write_settings(
        settings, local_datalake(lake), [mysql_source(mysql_server, scratch_db, [unpartitioned])]
    )
    before = lake_state(lake)
    with lock_held(settings) as holder:
        code, out = finish(panorama(settings, command, "--all"))
        assert holder.poll() is None  # it did not wait for the lock
    assert code == 3, out
    assert out.strip() == locked_line(settings, "extract-and-load", holder.pid, command)
    assert lake_state(lake) == before
    # Once the lock is free the same command runs, and changes what the test compared.
    code, out = finish(panorama(settings, command, "--all"))
    assert code == 0, out
    assert lake_state(lake) != before


def test_catalog_command_exits_while_extract_and_load_runs(
    courses_settings: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    lake = courses_settings.parent / "lake"
    settings = courses_settings
    for args in (["create-datalake-tables", "--all"], ["create-datalake-views", "--all"]):
        code, out = finish(panorama(settings, *args))
        assert code == 0, out
    with connect(mysql_server, scratch_db) as blocker, blocker.cursor() as cur:
        # The run stays mid-table, its query waiting for this lock, until the test lets it go.
        cur.execute("LOCK TABLES courses WRITE")
        run = panorama(settings, "extract-and-load", "--all")
        try:
            wait_for_query(mysql_server, scratch_db, "STATE", "Waiting for table%lock%")
            code, out = finish(panorama(settings, "drop-datalake-tables", "--all"))
        finally:
            cur.execute("UNLOCK TABLES")
        run_code, run_out = finish(run)
    assert code == 3, out
    assert out.strip() == locked_line(settings, "extract-and-load", run.pid, "drop-datalake-tables")
    assert run_code == 0, run_out
    # The drop did not happen: the typed view is there, with every source row.
    db = duckdb.connect(str(lake / "panorama.duckdb"), read_only=True)
    rows = db.execute("SELECT id, course_id, grade FROM openedx_table_courses").fetchall()
    db.close()
    assert sorted(rows) == [(1, "c1", 0.5), (2, "c2", 1.0), (3, "c1", None)]


def test_no_secret_in_any_output(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    secret = "Zq9-unique-Pw!x"
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int primary key, note varchar(20))")
        cur.execute("INSERT INTO t VALUES (1, 'hello')")
        cur.execute("DROP USER IF EXISTS 'secret_tester'@'%'")
        cur.execute("CREATE USER 'secret_tester'@'%%' IDENTIFIED BY %s", [secret])
        cur.execute(
            f"GRANT ALL ON `{scratch_db}`.* TO 'secret_tester'@'%'"
        )  # no params: '%' is literal
    tables = [
        {
            "name": "t",
            "fields": [{"name": "id", "type": "int"}, {"name": "note", "type": "varchar(20)"}],
        },
        {"name": "missing", "fields": [{"name": "id", "type": "int"}]},
    ]
    source = mysql_source(mysql_server, scratch_db, tables)
    source.update(mysql_username="secret_tester", mysql_password="${PANORAMA_TEST_DB_PASSWORD}")
    # A local datalake has no key (an aws key there is a settings error): the datalake's
    # secrets are masked as tests/test_settings.py shows.
    lake = local_datalake(tmp_path / "lake")
    good = write_settings(tmp_path / "good.yaml", lake, [source])
    bad = write_settings(tmp_path / "bad.yaml", lake, [{**source, "mysql_database": "no_such_db"}])
    worse = write_settings(tmp_path / "worse.yaml", lake, [{**source, "mysql_port": 1}])
    env = {"PANORAMA_TEST_DB_PASSWORD": secret}
    outputs = []
    for settings, args in [
        (good, ["--debug", "test-connections"]),
        (good, ["--debug", "create-datalake-tables", "--all"]),
        (
            good,
            [
                "--debug",
                "extract-and-load",
                "--all",
                "--force",
                "--results-file",
                str(tmp_path / "r.json"),
            ],
        ),
        (bad, ["--debug", "test-connections"]),
        (bad, ["--debug", "extract-and-load", "--all"]),
        (worse, ["--debug", "extract-and-load", "--all"]),
    ]:
        outputs.append(finish(panorama(settings, *args, env=env))[1])
    everything = "\n".join(outputs) + (tmp_path / "r.json").read_text()
    assert "t: 1 rows" in everything  # the good run did run
    assert "missing: table does not exist" in everything
    assert "may not use database 'no_such_db', or it does not exist" in everything
    assert "cannot connect" in everything
    assert secret not in everything


def test_endpoint_credentials_are_secrets() -> None:
    from panorama_elt.secrets import SecretFilter
    from panorama_elt.settings import parse_settings

    data = {
        "datalake": {
            "type": "aws",
            "panorama_raw_data_bucket": "b",
            "endpoint_url": "http://minio:S3cr3tPass@minio:9000",
        },
        "datasources": [{"type": "mysql", "name": "db", "tables": []}],
    }
    secrets = SecretFilter()
    secrets.add_from_settings(parse_settings(data, Path("s.yaml")))
    assert "S3cr3tPass" not in secrets.scrub('S3 said: bad "S3cr3tPass" at http://minio:9000')


def test_secret_inside_a_library_message_is_masked() -> None:
    from panorama_elt.secrets import SecretFilter

    secrets = SecretFilter()
    secrets.add("hunter2")
    assert (
        secrets.scrub("auth failed for mongodb://admin:hunter2@db:27017/edxapp")
        == "auth failed for mongodb://admin:***@db:27017/edxapp"
    )
    assert secrets.scrub("https://key:other@host/x") == "https://key:***@host/x"


# Bad input through the real command line: exit code 2 for settings/usage, 1 for run
# failures; one "Error:" line (or one FAILED line per table); no traceback.
RUN_CASES = [
    (
        "missing table",
        {"tables": [{"name": "nope", "fields": [{"name": "id", "type": "int"}]}]},
        1,
        "nope: table does not exist in database",
    ),
    (
        "missing column",
        {"tables": [{"name": "present", "fields": [{"name": "ghost", "type": "int"}]}]},
        1,
        "present: Unknown column 'ghost'",
    ),
    (
        "wrong password",
        {"mysql_password": "not-the-password"},
        1,
        "access denied for user 'panorama'",
    ),
    (
        "unknown database",
        {"mysql_database": "no_such_db"},
        1,
        "database 'no_such_db' does not exist",
    ),
    ("unreachable", {"mysql_port": 1}, 1, "cannot connect"),
    (
        "no fields yet",
        {"tables": [{"name": "present"}]},
        1,
        "present: no fields in the settings; run set-tables-fields first",
    ),
]


@pytest.mark.parametrize("name, change, code, message", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_failures_are_one_line(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    scratch_db: str,
    name: str,
    change: dict[str, Any],
    code: int,
    message: str,
) -> None:
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE present (id int primary key)")
    source = mysql_source(
        mysql_server, scratch_db, [{"name": "present", "fields": [{"name": "id", "type": "int"}]}]
    )
    source.update(change)
    settings = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    exit_code, out = finish(panorama(settings, "extract-and-load", "--all"))
    assert exit_code == code, out
    assert message in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "data, message", SETTINGS_CASES[:20], ids=[c[1][:50] for c in SETTINGS_CASES[:20]]
)
def test_settings_errors_through_the_cli(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    settings = tmp_path / "s.yaml"
    settings.write_text(yaml.safe_dump(data))
    code, out = finish(panorama(settings, "extract-and-load", "--all"))
    assert code == 2, out
    error_lines = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["extract-and-load", "--all", "--tables", "t"], "--all cannot be combined"),
        (["extract-and-load", "--tables", "t,unknown"], "--tables: unknown not found"),
        (["extract-and-load", "--datasource", "nope"], "--datasource: no datasource named 'nope'"),
        (["extract-and-load"], "choose the tables with"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_through_the_cli(tmp_path: Path, args: list[str], message: str) -> None:
    settings = write_settings(
        tmp_path / "s.yaml",
        local_datalake(tmp_path / "lake"),
        [
            mysql_source(
                {"host": "127.0.0.1", "port": 1, "user": "u", "password": "p"},
                "d",
                [{"name": "t", "fields": [{"name": "id", "type": "int"}]}],
            )
        ],
    )
    code, out = finish(panorama(settings, *args))
    assert code == 2, out
    assert message in out
    assert "Traceback" not in out
