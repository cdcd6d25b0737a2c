"""AWS datalake against moto: Glue definitions, batching, Athena statements, errors, end to end.

moto does not run Athena SQL, so views are checked as the statement text Athena receives.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from click.testing import CliRunner
from moto import mock_aws
from moto.server import ThreadedMotoServer

from panorama_elt.cli import main
from panorama_elt.column_types import parse_column_type
from panorama_elt.datalakes import aws
from panorama_elt.datalakes.aws import AwsDatalake
from panorama_elt.encoding import decode_value
from panorama_elt.errors import DatalakeError
from panorama_elt.paths import object_key
from panorama_elt.settings import (
    BasePartition,
    DatalakeSettings,
    FieldSettings,
    TableSettings,
    load_settings,
)
from panorama_elt.views import create_view_sql
from tests import builders
from tests.conftest import connect, mysql_source, template_tables, write_settings
from tests.opencsv import read_records

BUCKET = "panorama-test"
LMS = "lms.example.com"
REGION = "us-east-1"
COURSE = "course-v1:Org+Code+Run"


def settings(**changes: Any) -> DatalakeSettings:
    base = DatalakeSettings(
        type="aws",
        base_prefix="openedx",
        database="panorama",
        workgroup="primary",
        base_partitions=(BasePartition("lms", parse_column_type("varchar"), LMS),),
        bucket=BUCKET,
        aws_region=REGION,
        athena_output_location=f"s3://{BUCKET}/athena-results/",
    )
    return dataclasses.replace(base, **changes)


def studentmodule() -> TableSettings:
    # Mixed case on purpose: Glue lowercases column names, folders keep the settings' spelling.
    return builders.studentmodule(course_field="Course_ID", state_field="State")


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        boto3.client("glue", region_name=REGION).create_database(DatabaseInput={"Name": "panorama"})
        yield


@pytest.fixture
def lake(moto: None) -> Iterator[AwsDatalake]:
    datalake = AwsDatalake(settings())
    yield datalake
    datalake.close()


def count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call the client makes from now on."""
    calls: list[dict[str, Any]] = []
    service = client.meta.service_model.service_name
    client.meta.events.register(
        f"before-parameter-build.{service}.{operation}",
        lambda params, **_: calls.append(dict(params)),
    )
    return calls


def glue_table(name: str) -> dict[str, Any]:
    table: dict[str, Any] = boto3.client("glue", region_name=REGION).get_table(
        DatabaseName="panorama", Name=name
    )["Table"]
    return table


# Glue: raw tables and partitions


def test_raw_table_definition(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    got = glue_table("openedx_raw_courseware_studentmodule")
    assert got["TableType"] == "EXTERNAL_TABLE"
    assert got["Parameters"]["skip.header.line.count"] == "1"
    assert got["Parameters"]["classification"] == "csv"
    assert got["PartitionKeys"] == [
        {"Name": "lms", "Type": "string"},
        {"Name": "course_id", "Type": "string"},
    ]
    sd = got["StorageDescriptor"]
    assert sd["Columns"] == [
        {"Name": "id", "Type": "string"},
        {"Name": "state", "Type": "string"},
        {"Name": "modified", "Type": "string"},
    ]
    assert sd["Location"] == f"s3://{BUCKET}/openedx/courseware_studentmodule/"
    assert sd["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    assert sd["OutputFormat"] == "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
    assert sd["SerdeInfo"] == {
        "SerializationLibrary": "org.apache.hadoop.hive.serde2.OpenCSVSerde",
        "Parameters": {"separatorChar": ",", "quoteChar": '"', "escapeChar": "\\"},
    }


def test_create_table_updates_an_existing_table(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    wider = dataclasses.replace(
        table, fields=(*table.fields, FieldSettings("done", parse_column_type("tinyint(1)")))
    )
    lake.create_table(wider)
    columns = glue_table(table.datalake_table_name)["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == ["id", "state", "modified", "done"]


def test_partition_location_and_storage(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    lake.add_partitions(table, [(LMS, COURSE)])
    part = boto3.client("glue", region_name=REGION).get_partition(
        DatabaseName="panorama", TableName=table.datalake_table_name, PartitionValues=[LMS, COURSE]
    )["Partition"]
    assert part["Values"] == [LMS, COURSE]
    sd = part["StorageDescriptor"]
    assert sd["Location"] == (
        f"s3://{BUCKET}/openedx/courseware_studentmodule/lms=lms.example.com/"
        "Course_ID=course-v1%3AOrg%2BCode%2BRun/"  # folders keep the settings' spelling
    )
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.serde2.OpenCSVSerde"
    assert [c["Name"] for c in sd["Columns"]] == ["id", "state", "modified"]
    # The file of that partition is exactly in that folder.
    assert (
        lake.key(table, (LMS, COURSE))
        == sd["Location"].removeprefix(f"s3://{BUCKET}/") + "courseware_studentmodule.csv"
    )


def test_partitions_go_in_batches_glue_accepts(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    wanted = [(LMS, f"course-v1:Org+C{i}+Run") for i in range(250)]
    creates = count_calls(lake.glue, "BatchCreatePartition")
    lake.add_partitions(table, wanted)
    assert [len(c["PartitionInputList"]) for c in creates] == [100, 100, 50]
    assert lake.partitions(table) == set(wanted)

    lake.add_partitions(table, wanted[:120])  # already there: fine, nothing new
    assert lake.partitions(table) == set(wanted)

    deletes = count_calls(lake.glue, "BatchDeletePartition")
    lake.remove_partitions(table, wanted[:230])
    assert [len(c["PartitionsToDelete"]) for c in deletes] == [25] * 9 + [5]
    assert lake.partitions(table) == set(wanted[230:])


def test_partition_errors_name_table_and_values(
    lake: AwsDatalake, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = studentmodule()
    lake.create_table(table)

    def refuse(**request: Any) -> dict[str, Any]:
        entries = request["PartitionInputList"]
        return {
            "Errors": [
                {
                    "PartitionValues": entries[0]["Values"],
                    "ErrorDetail": {"ErrorCode": "AlreadyExistsException", "ErrorMessage": "x"},
                },
                {
                    "PartitionValues": entries[1]["Values"],
                    "ErrorDetail": {
                        "ErrorCode": "InvalidInputException",
                        "ErrorMessage": "Value too long",
                    },
                },
            ]
        }

    monkeypatch.setattr(lake.glue, "batch_create_partition", refuse)
    with pytest.raises(DatalakeError) as error:
        lake.add_partitions(table, [(LMS, "a"), (LMS, "b")])
    message = str(error.value)
    assert "openedx_raw_courseware_studentmodule" in message
    assert "('lms.example.com', 'b')" in message
    assert "InvalidInputException: Value too long" in message
    assert "'a'" not in message


def test_remove_partitions_deletes_only_that_folder(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    s3 = boto3.client("s3", region_name=REGION)
    keys = {}
    for course in ("c", "c2"):
        keys[course] = lake.key(table, (LMS, course))
        s3.put_object(Bucket=BUCKET, Key=keys[course], Body=b"x")
    stray = keys["c"].removesuffix(".csv") + ".csv.gz"  # left by a change of compression
    s3.put_object(Bucket=BUCKET, Key=stray, Body=b"x")
    lake.add_partitions(table, [(LMS, "c"), (LMS, "c2")])
    lake.remove_partitions(table, [(LMS, "c")])
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert left == {keys["c2"]}
    assert lake.partitions(table) == {(LMS, "c2")}


def test_partitions_of_a_missing_table(lake: AwsDatalake) -> None:
    with pytest.raises(DatalakeError, match="run create-datalake-tables first"):
        lake.add_partitions(studentmodule(), [(LMS, COURSE)])
    with pytest.raises(DatalakeError) as error:
        lake.partitions(studentmodule())
    assert str(error.value) == (
        "courseware_studentmodule: raw table openedx_raw_courseware_studentmodule does not "
        "exist in database panorama; run create-datalake-tables first"
    )


# Athena: typed views


def test_view_statement_sent_to_athena(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    starts = count_calls(lake.athena, "StartQueryExecution")
    lake.create_view(table)
    [start] = starts
    sql = start["QueryString"]
    assert sql == create_view_sql(
        table, lake.settings, "athena", raw_ref='"panorama"."openedx_raw_courseware_studentmodule"'
    )
    assert sql.startswith('CREATE OR REPLACE VIEW "openedx_table_courseware_studentmodule" AS\n')
    assert sql.endswith('\nFROM "panorama"."openedx_raw_courseware_studentmodule"')
    assert 'CAST(NULLIF("id", \'\\N\') AS BIGINT) AS "id"' in sql
    assert 'AS TIMESTAMP(6)) END AS "modified"' in sql
    assert '"lms"' in sql
    assert start["QueryExecutionContext"] == {"Database": "panorama"}
    assert start["WorkGroup"] == "primary"
    assert start["ResultConfiguration"] == {"OutputLocation": f"s3://{BUCKET}/athena-results/"}
    # What Athena recorded is the same statement.
    athena = boto3.client("athena", region_name=REGION)
    [query_id] = athena.list_query_executions()["QueryExecutionIds"]
    assert athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Query"] == sql


def test_workgroup_result_location_is_used_when_not_set(moto: None) -> None:
    lake = AwsDatalake(settings(athena_output_location=None))
    table = studentmodule()
    lake.create_table(table)
    starts = count_calls(lake.athena, "StartQueryExecution")
    lake.create_view(table)
    assert "ResultConfiguration" not in starts[0]


def test_drop_table_drops_view_and_raw_table(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    starts = count_calls(lake.athena, "StartQueryExecution")
    lake.drop_table(table)
    assert (
        starts[0]["QueryString"] == 'DROP VIEW IF EXISTS "openedx_table_courseware_studentmodule"'
    )
    glue = boto3.client("glue", region_name=REGION)
    assert glue.get_tables(DatabaseName="panorama")["TableList"] == []
    lake.drop_table(table)


def stub_query(stubber: Stubber, *states: dict[str, Any]) -> None:
    stubber.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    for status in states:
        stubber.add_response(
            "get_query_execution",
            {"QueryExecution": {"QueryExecutionId": "q-1", "Status": status}},
            {"QueryExecutionId": "q-1"},
        )


def test_failed_athena_query_is_reported_with_its_reason(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    reason = "line 3:3: Column 'zz' cannot be resolved"
    with Stubber(lake.athena) as stubber:
        stub_query(
            stubber,
            {"State": "RUNNING"},
            {"State": "FAILED", "StateChangeReason": reason},
        )
        with pytest.raises(DatalakeError) as error:
            lake.create_view(table)
        stubber.assert_no_pending_responses()
    message = str(error.value)
    assert message.startswith("openedx_table_courseware_studentmodule: athena CREATE VIEW: ")
    assert f"q-1 FAILED: {reason}" in message
    assert (
        'statement: CREATE OR REPLACE VIEW "openedx_table_courseware_studentmodule" AS' in message
    )
    assert "\n" not in message


def test_cancelled_and_slow_queries(lake: AwsDatalake, monkeypatch: pytest.MonkeyPatch) -> None:
    table = studentmodule()
    lake.create_table(table)
    with Stubber(lake.athena) as stubber:
        stub_query(stubber, {"State": "CANCELLED", "StateChangeReason": "Query cancelled by user"})
        with pytest.raises(DatalakeError, match="CANCELLED: Query cancelled by user"):
            lake.drop_table(table)
    # A slow query, on a clock that moves only when the poller sleeps: the schedule is checked
    # without waiting, and a busy machine cannot change it.
    clock = FakeClock()
    monkeypatch.setattr(aws, "time", clock)
    lake.query_timeout = 1.0
    with Stubber(lake.athena) as stubber:
        # Polls at 0, 0.2 and 0.6 s; the next one (1.4 s) would be past the timeout: stop.
        stub_query(stubber, {"State": "QUEUED"}, {"State": "RUNNING"}, {"State": "RUNNING"})
        stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-1"})
        with pytest.raises(DatalakeError, match="still RUNNING after 1 s; stopped"):
            lake.create_view(table)
        stubber.assert_no_pending_responses()
    assert clock.sleeps == [0.2, 0.4]


class FakeClock:
    """Stands in for the `time` module of aws.py: time passes only when slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# Retries, errors, credentials


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def throttle_first(client: Any, operation: str, times: int) -> list[str]:
    """Answer the first ``times`` calls of ``operation`` with a ThrottlingException."""
    attempts: list[str] = []
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()

    def respond(request: Any, **_: Any) -> AWSResponse | None:
        attempts.append(request.url)
        if len(attempts) > times:
            return None  # moto answers
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 400, headers, _Raw(body))

    service = client.meta.service_model.service_name
    client.meta.events.register_first(f"before-send.{service}.{operation}", respond)
    return attempts


def test_client_config_has_standard_retries(moto: None) -> None:
    lake = AwsDatalake(settings(aws_max_attempts=7))
    for client in (lake.s3, lake.glue, lake.athena):
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 7}


def test_throttling_is_retried(lake: AwsDatalake) -> None:
    table = studentmodule()
    lake.create_table(table)
    attempts = throttle_first(lake.glue, "GetPartitions", times=1)
    assert lake.partitions(table) == set()
    assert len(attempts) == 2


def test_throttling_beyond_max_attempts_fails(moto: None) -> None:
    lake = AwsDatalake(settings(aws_max_attempts=1))
    table = studentmodule()
    lake.create_table(table)
    attempts = throttle_first(lake.glue, "GetPartitions", times=5)
    with pytest.raises(DatalakeError) as error:
        lake.partitions(table)
    assert len(attempts) == 1
    assert str(error.value) == (
        "openedx_raw_courseware_studentmodule: glue GetPartitions: ThrottlingException: "
        "Rate exceeded"
    )


def test_explicit_keys_are_used_and_never_shown(moto: None) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    lake = AwsDatalake(
        settings(aws_access_key="AKIAEXPLICIT0EXAMPLE", aws_secret_access_key=secret)
    )
    credentials = lake.session.get_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("AKIAEXPLICIT0EXAMPLE", secret)
    # A failing call names the operation and the table, never the keys.
    lake.settings = dataclasses.replace(lake.settings, database="missing")
    with pytest.raises(DatalakeError) as error:
        lake.create_table(studentmodule())
    message = str(error.value)
    assert message.startswith("openedx_raw_courseware_studentmodule: glue CreateTable: ")
    assert "EntityNotFoundException" in message
    assert "AKIAEXPLICIT0EXAMPLE" not in message and secret not in message


def test_credential_chain_when_no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lake = AwsDatalake(settings())
    assert lake.session.get_credentials().method == "env"
    assert lake.session.region_name == REGION
    # A named profile from the shared credentials file.
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[panorama]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = fromprofile\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    lake = AwsDatalake(settings(aws_profile="panorama"))
    found = lake.session.get_credentials()
    assert (found.method, found.access_key) == ("shared-credentials-file", "AKIAPROFILE")
    with pytest.raises(DatalakeError, match=r"AWS session: .*profile \(nope\) could not be found"):
        AwsDatalake(settings(aws_profile="nope"))


def test_one_key_without_the_other_is_refused() -> None:
    with pytest.raises(DatalakeError, match="set both, or neither") as error:
        AwsDatalake(settings(aws_access_key="AKIAONLY"))
    assert "AKIAONLY" not in str(error.value)


def test_endpoint_url_serves_every_client() -> None:
    lake = AwsDatalake(settings(endpoint_url="http://127.0.0.1:9"))
    assert {c.meta.endpoint_url for c in (lake.s3, lake.glue, lake.athena)} == {
        "http://127.0.0.1:9"
    }


# S3 files and state


def test_upload_is_checksummed_and_multipart_when_large(
    lake: AwsDatalake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "small.csv"
    small.write_bytes(b'"id"\n"1"\n')
    lake.upload(small, "openedx/t/t.csv")
    s3 = boto3.client("s3", region_name=REGION)
    head = s3.head_object(Bucket=BUCKET, Key="openedx/t/t.csv", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"]
    assert head["ContentType"] == "text/csv"
    assert not small.exists()  # uploaded files leave the temp dir at once
    # Above the threshold, parts go up in parallel (moto's minimum part size is 5 MiB).
    monkeypatch.setattr(
        aws,
        "TRANSFER",
        aws.TransferConfig(multipart_threshold=5 * aws.MIB, multipart_chunksize=5 * aws.MIB),
    )
    big = tmp_path / "big.csv.gz"
    data = bytes(range(256)) * (11 * aws.MIB // 256)
    big.write_bytes(data)
    parts = count_calls(lake.s3, "UploadPart")
    lake.upload(big, "openedx/t/big.csv.gz")
    assert len(parts) == 3
    assert all(p["ChecksumAlgorithm"] == "CRC32" for p in parts)
    assert s3.get_object(Bucket=BUCKET, Key="openedx/t/big.csv.gz")["Body"].read() == data


def test_failed_uploads_are_raised_once(moto: None, tmp_path: Path) -> None:
    lake = AwsDatalake(settings(bucket="no-such-bucket"))
    # The failure comes from wait_uploads, or from the next upload_async if it was quicker.
    with pytest.raises(
        DatalakeError, match=r"upload of s3://no-such-bucket/k\d\.csv: NoSuchBucket"
    ):
        for i in range(3):
            path = tmp_path / f"k{i}.csv"
            path.write_text("x")
            lake.upload_async(path, f"k{i}.csv")
        lake.wait_uploads()
    lake.wait_uploads()  # nothing left over for the next table
    (tmp_path / "k.csv").write_text("x")
    with pytest.raises(DatalakeError) as error:
        lake.upload(tmp_path / "k.csv", "k.csv")
    assert str(error.value) == (
        "upload of s3://no-such-bucket/k.csv: NoSuchBucket: The specified bucket does not exist"
    )
    assert (tmp_path / "k.csv").exists()  # kept: not uploaded
    lake.close()


def test_state_errors_other_than_missing_are_raised(moto: None) -> None:
    lake = AwsDatalake(settings(bucket="no-such-bucket"))
    with pytest.raises(DatalakeError, match="read of s3://no-such-bucket/s.json: NoSuchBucket"):
        lake.read_state("s.json")


def test_connection_failures_are_reported_not_raised(moto: None) -> None:
    lake = AwsDatalake(settings(bucket="no-such-bucket", database="nodb"))
    with Stubber(lake.athena) as stubber:
        stubber.add_client_error(
            "get_work_group", "InvalidRequestException", "WorkGroup primary is not found."
        )
        checks = lake.test_connection()
    assert [(what, ok) for what, ok, _ in checks] == [
        ("s3://no-such-bucket", False),
        ("glue database nodb", False),
        ("athena workgroup primary", False),
    ]
    details = [detail for _, _, detail in checks]
    assert details[0].startswith("NoSuchBucket: ")
    assert details[1] == "EntityNotFoundException: Database nodb not found."
    assert details[2] == "InvalidRequestException: WorkGroup primary is not found."


def test_connection_needs_a_query_result_location(moto: None) -> None:
    lake = AwsDatalake(settings(athena_output_location=None))
    checks = {what: (ok, detail) for what, ok, detail in lake.test_connection()}
    assert checks["s3://panorama-test"][0]
    assert checks["glue database panorama"] == (True, "database panorama exists")
    ok, detail = checks["athena workgroup primary"]
    assert not ok
    assert "set datalake.athena_output_location" in detail


# End to end: MariaDB -> CLI -> moto server (S3, Glue, Athena over HTTP)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def server_lake(moto_server: str) -> str:
    """A fresh moto server state with the bucket and the Glue database."""
    reset = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    boto3.client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(Bucket=BUCKET)
    boto3.client("glue", region_name=REGION, endpoint_url=moto_server).create_database(
        DatabaseInput={"Name": "panorama"}
    )
    return moto_server


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts every AWS operation the CLI's datalakes call (in this process)."""
    calls: Counter[str] = Counter()
    original = AwsDatalake.__init__

    def init(self: AwsDatalake, settings: DatalakeSettings) -> None:
        original(self, settings)
        for client in (self.s3, self.glue, self.athena):
            client.meta.events.register(
                "before-call", lambda model, **_: calls.update([model.name])
            )

    monkeypatch.setattr(AwsDatalake, "__init__", init)
    return calls


def aws_settings(path: Path, endpoint: str, sources: list[dict[str, Any]]) -> Path:
    datalake = {
        "type": "aws",
        "panorama_raw_data_bucket": BUCKET,
        "base_prefix": "openedx",
        "aws_region": REGION,
        "endpoint_url": endpoint,
        "athena_output_location": f"s3://{BUCKET}/athena-results/",
        "datalake_database": "panorama",
        "datalake_workgroup": "primary",
        "base_partitions": [{"name": "lms", "type": "varchar", "value": LMS}],
    }
    return write_settings(path, datalake, sources)


def cli(settings_file: Path, *args: str) -> dict[str, dict[str, Any]]:
    """Run a command; return the per-table results when it was extract-and-load."""
    results = settings_file.parent / "results.json"
    if args[0] == "extract-and-load":
        args = (*args, "--results-file", str(results))
    result = CliRunner().invoke(
        main, ["--settings", str(settings_file), *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    if args[0] != "extract-and-load":
        return {}
    return {t["table"]: t for t in json.loads(results.read_text())["tables"]}


def source_by_course(server: dict[str, Any], database: str) -> dict[str, dict[str, str | None]]:
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute("SELECT course_id, id, state FROM courseware_studentmodule")
        by_course: dict[str, dict[str, str | None]] = {}
        for course, row_id, state in cur.fetchall():
            by_course.setdefault(course, {})[str(row_id)] = state
    return by_course


def lake_by_course(
    endpoint: str, table: TableSettings, lake_settings: DatalakeSettings, courses: list[str]
) -> dict[str, dict[str, str | None]]:
    """(id -> state) per course, read from each partition's S3 object as OpenCSVSerde would."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    header = [f.name for f in table.file_fields]
    got = {}
    for course in courses:
        body = s3.get_object(Bucket=BUCKET, Key=object_key(table, lake_settings, (LMS, course)))[
            "Body"
        ].read()
        text = body.decode("utf-8")
        assert read_records(text, skip_header=False)[0] == header
        records = [dict(zip(header, r, strict=True)) for r in read_records(text)]
        got[course] = {r["id"]: decode_value(r["state"]) for r in records}
    return got


def lake_keys(endpoint: str, prefix: str) -> set[str]:
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def studentmodule_keys(endpoint: str) -> set[str]:
    return lake_keys(endpoint, "openedx/courseware_studentmodule/")


def test_end_to_end_against_a_moto_server(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    openedx_db: str,
    server_lake: str,
    aws_calls: Counter[str],
) -> None:
    source = mysql_source(mysql_server, openedx_db, template_tables(), name="openedx_mysql")
    settings_file = aws_settings(tmp_path / "settings.yaml", server_lake, [source])
    config = load_settings(settings_file)
    cli(settings_file, "test-connections")
    cli(settings_file, "create-datalake-tables", "--all")
    cli(settings_file, "create-datalake-views", "--all")
    # With --all: the built-in country codes table and view too, and the analytics views whose
    # tables are in the settings (not view_enrollments: no course_structures here).
    assert aws_calls["CreateTable"] == len(config.tables) + 1
    assert aws_calls["StartQueryExecution"] == len(config.tables) + 1 + 2
    assert lake_keys(server_lake, "openedx/country_codes/") == {
        f"openedx/country_codes/lms={LMS}/country_codes.csv"
    }

    first = cli(settings_file, "extract-and-load", "--all", "--force")
    assert all(r["status"] == "ok" for r in first.values()), first
    table = next(t for t in config.tables if t.name == "courseware_studentmodule")
    expected = source_by_course(mysql_server, openedx_db)
    courses = sorted(expected)
    assert first["courseware_studentmodule"]["partitions_registered"] == len(courses) == 8
    lake = AwsDatalake(config.datalake)
    assert studentmodule_keys(server_lake) == {lake.key(table, (LMS, c)) for c in courses}
    assert lake_by_course(server_lake, table, config.datalake, courses) == expected
    assert lake.partitions(table) == {(LMS, c) for c in courses}
    glue = boto3.client("glue", region_name=REGION, endpoint_url=server_lake)
    for part in glue.get_partitions(DatabaseName="panorama", TableName=table.datalake_table_name)[
        "Partitions"
    ]:
        folder = lake.key(table, tuple(part["Values"])).rsplit("/", 1)[0]
        assert part["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/{folder}/"
    # Every table is registered: its base partition at least.
    for t in config.tables:
        assert lake.partitions(t), t.name

    aws_calls.clear()
    second = cli(settings_file, "extract-and-load", "--all", "--force")
    assert all(r["status"] == "ok" and r["partitions_registered"] == 0 for r in second.values())
    assert aws_calls["BatchCreatePartition"] == 0
    assert aws_calls["BatchDeletePartition"] == 0
    assert studentmodule_keys(server_lake) == {lake.key(table, (LMS, c)) for c in courses}


@pytest.fixture
def own_openedx_db(mysql_server: dict[str, Any], scratch_db: str) -> str:
    """A private copy of the synthetic data whose rows all changed a month ago."""
    from panorama_elt.synthetic.openedx_mysql import create_schema, generate

    with connect(mysql_server, scratch_db) as conn:
        create_schema(conn)
        generate(conn, users=100, courses=5, studentmodule_rows=800, seed=3)
        with conn.cursor() as cur:
            cur.execute("UPDATE courseware_studentmodule SET modified = NOW(6) - INTERVAL 30 DAY")
    return scratch_db


def test_incremental_run_against_a_moto_server(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    own_openedx_db: str,
    server_lake: str,
    aws_calls: Counter[str],
) -> None:
    tables = [t for t in template_tables() if t["name"] == "courseware_studentmodule"]
    settings_file = aws_settings(
        tmp_path / "settings.yaml",
        server_lake,
        [mysql_source(mysql_server, own_openedx_db, tables)],
    )
    config = load_settings(settings_file)
    table = config.tables[0]
    cli(settings_file, "create-datalake-tables", "--all")
    cli(settings_file, "extract-and-load", "--all", "--force")
    courses = sorted(source_by_course(mysql_server, own_openedx_db))
    touched = courses[1:3]
    with connect(mysql_server, own_openedx_db) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE courseware_studentmodule SET state = CONCAT('{\"touched\": ', id, '}'), "
            "modified = NOW(6) WHERE course_id IN (%s, %s) ORDER BY id LIMIT 10",
            touched,
        )
        assert cur.rowcount == 10

    aws_calls.clear()
    puts = []
    original = AwsDatalake.upload

    def upload(self: AwsDatalake, local_file: Path, key: str) -> None:
        puts.append(key)
        original(self, local_file, key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AwsDatalake, "upload", upload)
        summary = cli(settings_file, "extract-and-load", "--all")["courseware_studentmodule"]
    assert summary["mode"] == "incremental"
    assert (summary["partitions_written"], summary["partitions_registered"]) == (2, 0)
    lake = AwsDatalake(config.datalake)
    assert sorted(puts) == sorted(lake.key(table, (LMS, c)) for c in touched)
    assert aws_calls["BatchCreatePartition"] == 0
    assert lake_by_course(server_lake, table, config.datalake, courses) == source_by_course(
        mysql_server, own_openedx_db
    )
    # The high-water mark lives in the bucket.
    assert lake.read_state(
        "openedx/_panorama_state/openedx_raw_courseware_studentmodule/"
        "lms=lms.example.com/state.json"
    )


def test_new_column_reaches_every_registered_partition(lake: AwsDatalake) -> None:
    """Athena reads a text partition with its own schema: an added column must reach it."""
    table = studentmodule()
    lake.create_table(table)
    lake.add_partitions(table, [(LMS, "c1"), (LMS, "c2")])
    grown = dataclasses.replace(
        table, fields=(*table.fields, FieldSettings("grade", parse_column_type("double")))
    )
    lake.create_table(grown)
    partitions = boto3.client("glue", region_name=REGION).get_partitions(
        DatabaseName="panorama", TableName=table.datalake_table_name
    )["Partitions"]
    assert len(partitions) == 2
    for p in partitions:
        assert [c["Name"] for c in p["StorageDescriptor"]["Columns"]][-1] == "grade"


def test_layout_change_never_deletes_another_installation(lake: AwsDatalake) -> None:
    other_lms = BasePartition("lms", parse_column_type("varchar"), "other.example.com")
    other = AwsDatalake(settings(base_partitions=(other_lms,)))
    flat = dataclasses.replace(studentmodule(), partitions=None)
    lake.create_table(flat)
    lake.add_partitions(flat, [(LMS,)])
    other.add_partitions(flat, [("other.example.com",)])
    with pytest.raises(DatalakeError, match=r"other installations \(other.example.com\)"):
        lake.create_table(studentmodule())
    assert len(lake.partitions(flat)) == 2
    other.close()


def test_upload_removes_the_file_with_the_other_suffix(lake: AwsDatalake, tmp_path: Path) -> None:
    """After a switch to gzip, a partition folder never holds both t.csv and t.csv.gz."""
    s3 = boto3.client("s3", region_name=REGION)
    plain = tmp_path / "t.csv"
    plain.write_text('"id"\n"1"\n')
    lake.upload(plain, "openedx/t/lms=x/t.csv")
    packed = tmp_path / "t.csv.gz"
    packed.write_bytes(b"not really gzip, S3 does not care")
    lake.upload(packed, "openedx/t/lms=x/t.csv.gz")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="openedx/t/")["Contents"]]
    assert keys == ["openedx/t/lms=x/t.csv.gz"]
