"""Ed-Fi on the AWS datalake (a moto server): files, Glue partitions and the Athena view.

moto does not run Athena SQL. So the statement Athena received for the current-state view is
run here on DuckDB (with Trino's ``json_extract_scalar`` defined as DuckDB's equivalent), over
raw tables rebuilt from what Glue has registered: each partition's S3 object, read the way
OpenCSVSerde reads it, with the partition values Glue holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest
from click.testing import CliRunner
from moto.server import ThreadedMotoServer

from panorama_elt.cli import main
from panorama_elt.synthetic.edfi_api import EdfiEmulator
from tests.conftest import write_settings
from tests.opencsv import read_records
from tests.test_edfi import SECRET, _body, edfi_source

BUCKET = "panorama-edfi"
REGION = "us-east-1"


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", region_name=REGION, endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    boto3.client("glue", region_name=REGION, endpoint_url=endpoint).create_database(
        DatabaseInput={"Name": "panorama"}
    )
    yield endpoint
    server.stop()


def cli(settings: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--settings", str(settings), *args])
    assert result.exit_code == 0, result.output
    return result


def athena_view_sql(endpoint: str, view: str) -> str:
    """The last CREATE VIEW statement Athena received for ``view``."""
    athena = boto3.client("athena", region_name=REGION, endpoint_url=endpoint)
    texts = [
        athena.get_query_execution(QueryExecutionId=q)["QueryExecution"]["Query"]
        for q in athena.list_query_executions()["QueryExecutionIds"]
    ]
    return [t for t in texts if t.startswith(f'CREATE OR REPLACE VIEW "{view}"')][-1]


def rebuild_raw(db: duckdb.DuckDBPyConnection, endpoint: str, table: str) -> None:
    """``panorama.<table>`` as Athena would read it: registered partitions' files, all text."""
    glue = boto3.client("glue", region_name=REGION, endpoint_url=endpoint)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    definition = glue.get_table(DatabaseName="panorama", Name=table)["Table"]
    columns = [c["Name"] for c in definition["StorageDescriptor"]["Columns"]]
    columns += [k["Name"] for k in definition["PartitionKeys"]]
    rows = []
    for part in glue.get_partitions(DatabaseName="panorama", TableName=table)["Partitions"]:
        prefix = part["StorageDescriptor"]["Location"].removeprefix(f"s3://{BUCKET}/")
        for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []):
            text = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
            rows += [[*record, *part["Values"]] for record in read_records(text)]
    names = ", ".join(f'"{c}" VARCHAR' for c in columns)
    db.execute(f'CREATE OR REPLACE TABLE panorama."{table}" ({names})')
    if rows:
        db.executemany(
            f'INSERT INTO panorama."{table}" VALUES ({", ".join("?" for _ in columns)})', rows
        )


def test_current_view_on_aws_equals_the_store(tmp_path: Path, moto_endpoint: str) -> None:
    with EdfiEmulator(version="7.3", client_secret=SECRET) as api:
        api.load()
        datalake = {
            "type": "aws",
            "panorama_raw_data_bucket": BUCKET,
            "base_prefix": "edfi",
            "aws_region": REGION,
            "endpoint_url": moto_endpoint,
            "athena_output_location": f"s3://{BUCKET}/athena-results/",
            "datalake_database": "panorama",
            "base_partitions": [{"name": "lms", "type": "varchar", "value": "district.example"}],
        }
        settings = write_settings(
            tmp_path / "settings.yaml", datalake, [edfi_source(api, ["studentSchoolAssociations"])]
        )
        cli(settings, "create-datalake-tables", "--all")
        cli(settings, "create-datalake-views", "--all")
        cli(settings, "extract-and-load", "--all")
        items = api.items("studentSchoolAssociations")
        api.delete("ed-fi", "studentSchoolAssociations", items[0]["id"])
        api.replace(
            "ed-fi",
            "studentSchoolAssociations",
            items[1]["id"],
            {**_body(items[1]), "entryDate": "2023-09-11"},
        )
        api.upsert(
            "ed-fi", "studentSchoolAssociations", {**_body(items[2]), "primarySchool": False}
        )
        cli(settings, "extract-and-load", "--all")

        glue = boto3.client("glue", region_name=REGION, endpoint_url=moto_endpoint)
        raw = "edfi_raw_student_school_associations"
        partitions = glue.get_partitions(DatabaseName="panorama", TableName=raw)["Partitions"]
        assert len(partitions) == 2  # one per pull
        sql = athena_view_sql(moto_endpoint, "edfi_table_student_school_associations")
        assert '"panorama"."edfi_raw_student_school_associations_deletes"' in sql
        db = duckdb.connect()
        db.execute("CREATE SCHEMA panorama")
        db.execute("CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p)")
        for table in (raw, raw + "_deletes"):
            rebuild_raw(db, moto_endpoint, table)
        db.execute(sql)
        rows = db.execute(
            "SELECT id, doc, lms, school_id FROM edfi_table_student_school_associations"
        ).fetchall()
        assert {r[0]: json.loads(r[1]) for r in rows} == {
            i["id"]: i for i in api.items("studentSchoolAssociations")
        }
        assert {r[2] for r in rows} == {"district.example"}
        assert all(r[3] == json.loads(r[1])["schoolReference"]["schoolId"] for r in rows)
