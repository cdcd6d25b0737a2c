"""panorama.py query: one question to the lake, on the local (DuckDB) and AWS (Athena) datalakes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import ROOT, local_datalake, write_settings

BUCKET = "panorama-test"


def panorama(settings: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "panorama.py"), "--settings", str(settings), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def local_lake(tmp_path: Path) -> Path:
    data = tmp_path / "courses.csv"
    data.write_text('id,name,score\n1,"Intro, part 1",2.5\n2,"line\nbreak",\n', encoding="utf-8")
    source = {
        "type": "csv",
        "name": "files",
        "location": str(data),
        "null_value": "",
        "tables": {
            "name": "courses",
            "fields": [
                {"name": "id", "type": "int"},
                {"name": "name", "type": "varchar"},
                {"name": "score", "type": "double"},
            ],
        },
    }
    settings = write_settings(
        tmp_path / "settings.yaml", local_datalake(tmp_path / "lake"), [source]
    )
    for command in ("create-datalake-tables", "create-datalake-views", "extract-and-load"):
        result = panorama(settings, command, "--tables", "courses")
        assert result.returncode == 0, result.stdout + result.stderr
    return settings


SQL = "SELECT id, name, score FROM openedx_table_courses ORDER BY id"


def test_local_query_as_a_table(local_lake: Path) -> None:
    result = panorama(local_lake, "query", SQL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "id  name           score",
        "--  -------------  -----",
        "1   Intro, part 1  2.5",
        "2   line\\nbreak    NULL",
        "(2 rows)",
    ]


def test_local_query_as_csv_and_json(local_lake: Path) -> None:
    result = panorama(local_lake, "query", SQL, "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'id,name,score\n1,"Intro, part 1",2.5\n2,"line\nbreak",\n'
    result = panorama(local_lake, "query", SQL, "--format", "json")
    assert json.loads(result.stdout) == [
        {"id": 1, "name": "Intro, part 1", "score": 2.5},
        {"id": 2, "name": "line\nbreak", "score": None},
    ]


@pytest.mark.parametrize(
    "sql, message",
    [
        (
            "SELECT * FROM no_such_view",
            "Error: query: DuckDB: Catalog Error: Table with name no_such_view does not exist!",
        ),
        (
            "DROP VIEW openedx_table_courses",
            'Error: query: DuckDB: Invalid Input Error: Cannot execute statement of type "DROP" on database "panorama" which is attached in read-only mode!',
        ),
    ],
)
def test_bad_or_writing_query_is_one_line(local_lake: Path, sql: str, message: str) -> None:
    result = panorama(local_lake, "query", sql)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(message)
    assert len(result.stderr.splitlines()) == 1
    assert (
        panorama(
            local_lake,
            "query",
            "SELECT count(*) AS n FROM openedx_table_courses",
            "--format",
            "csv",
        ).stdout
        == "n\n2\n"
    )


def test_query_before_any_table_exists(tmp_path: Path) -> None:
    source = {"type": "csv", "name": "f", "location": "x.csv", "tables": {"name": "t"}}
    settings = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    result = panorama(settings, "query", "SELECT 1")
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: no local datalake database at {tmp_path / 'lake' / 'panorama.duckdb'}: "
        "run create-datalake-tables first\n"
    )


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def test_athena_query_is_awaited_and_paged(tmp_path: Path, moto_endpoint: str) -> None:
    """moto runs no SQL: it is given the result Athena would return, header row included."""

    def cell(value: str | None) -> dict[str, str]:
        return {} if value is None else {"VarCharValue": value}

    rows = [["course", "n"], ["course-v1:A+B+C", "3"], ["x,y", None]]
    results = {
        "results": [
            {
                "rows": [{"Data": [cell(v) for v in row]} for row in rows],
                "column_info": [
                    {"Name": "course", "Type": "varchar"},
                    {"Name": "n", "Type": "bigint"},
                ],
            }
        ]
    }
    request = urllib.request.Request(
        f"{moto_endpoint}/moto-api/static/athena/query-results",
        data=json.dumps(results).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()
    datalake = {
        "type": "aws",
        "panorama_raw_data_bucket": BUCKET,
        "base_prefix": "openedx",
        "aws_region": "us-east-1",
        "endpoint_url": moto_endpoint,
        "athena_output_location": f"s3://{BUCKET}/athena-results/",
        "datalake_workgroup": "primary",
    }
    source = {"type": "csv", "name": "f", "location": "x.csv", "tables": {"name": "t"}}
    settings = write_settings(tmp_path / "s.yaml", datalake, [source])
    sql = "SELECT course, count(*) AS n FROM openedx_view_enrollments GROUP BY 1"
    result = panorama(settings, "query", sql, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"course": "course-v1:A+B+C", "n": "3"},
        {"course": "x,y", "n": None},
    ]
    athena = boto3.client("athena", region_name="us-east-1", endpoint_url=moto_endpoint)
    # moto keeps one Athena state per process: other tests' queries are listed too.
    ids = athena.list_query_executions()["QueryExecutionIds"]
    executions = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]
    (execution,) = [e for e in executions if e["Query"] == sql]
    assert execution["WorkGroup"] == "primary"
