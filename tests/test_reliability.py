"""Unattended hourly runs: killed runs lose nothing, overlaps exit, secrets stay secret, bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def wait_for_query(server: dict[str, Any], database: str, timeout: float = 60) -> int:
    """The connection id of the tool's running SELECT on `big`."""
    deadline = time.monotonic() + timeout
    with connect(server) as conn, conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND INFO LIKE %s",
                [database, "SELECT `course_id`, `id`%FROM `big`%"],
            )
            row = cur.fetchone()
            if row:
                return int(row[0])
            time.sleep(0.05)
    raise AssertionError("the extraction query never showed up")


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
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from panorama_elt.lock import run_lock\n"
            "from pathlib import Path\nwith run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(30)",
            str(settings),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        code, out = finish(panorama(settings, "extract-and-load", "--all"))
        assert code == 3
        assert "another extract-and-load" in out and "still running" in out
        assert time.monotonic() - started < 10
        assert not (tmp_path / "lake").exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # The lock dies with its holder: the next run proceeds (and fails only on the missing table).
    with run_lock(settings):
        pass


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
