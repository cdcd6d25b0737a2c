"""One contract, every datalake: local (DuckDB) and aws (moto in-process) pass the same tests."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from panorama_elt.column_types import parse_column_type
from panorama_elt.datalakes import make_datalake
from panorama_elt.datalakes.base import Datalake, PartitionValues
from panorama_elt.errors import DatalakeError
from panorama_elt.file_formats import writer_class
from panorama_elt.rows import batched
from panorama_elt.settings import (
    BasePartition,
    DatalakeSettings,
    FieldSettings,
    TableSettings,
)
from tests.builders import studentmodule

LMS = "lms.example.com"
BUCKET = "panorama-contract"
COURSES = ["course-v1:Org+Code+Run", "course-v1:Org+Other+2024_T1", "a/b=c%d"]


def lake_settings(kind: str, path: Path, file_format: str = "csv") -> DatalakeSettings:
    return DatalakeSettings(
        file_format=file_format,
        type=kind,
        base_prefix="openedx",
        database="panorama",
        workgroup="primary",
        base_partitions=(BasePartition("lms", parse_column_type("varchar"), LMS),),
        path=path if kind == "local" else None,
        bucket=BUCKET if kind == "aws" else None,
        aws_region="us-east-1",
        athena_output_location=f"s3://{BUCKET}/athena-results/" if kind == "aws" else None,
    )


def unpartitioned() -> TableSettings:
    fields = (FieldSettings("id", parse_column_type("int")),)
    return TableSettings("plain", "db", "raw_plain", "table_plain", fields)


@dataclass
class Lake:
    """A datalake under test, and a way to read its objects directly."""

    lake: Datalake
    read: Callable[[str], bytes | None]
    tmp: Path

    def file(self, table: TableSettings, rows: list[tuple[Any, ...]]) -> Path:
        """A finished file of one partition, written the way a run writes it (a new folder:
        writers number files); ``rows`` hold the file fields only."""
        folder = Path(tempfile.mkdtemp(dir=self.tmp))
        key = ["p"] * len(table.partition_fields)
        rows_with_key = [[*key, *row] for row in rows]
        writer = writer_class(self.lake.settings)(table, folder)
        ((_, written),) = writer.write(batched(rows_with_key), as_bytes=False)
        return written.path

    def put(self, table: TableSettings, values: PartitionValues, rows: list[Any]) -> str:
        key = self.lake.key(table, values)
        self.lake.upload(self.file(table, rows), key)
        return key


@pytest.fixture(params=["local", "aws", "local-parquet", "aws-parquet"])
def datalake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    work = tmp_path / "work"
    work.mkdir()
    kind, _, file_format = request.param.partition("-")
    file_format = file_format or "csv"
    if kind == "local":
        lake = make_datalake(lake_settings("local", tmp_path / "lake", file_format))
        root = tmp_path / "lake"

        def read_local(key: str) -> bytes | None:
            path = root / key
            return path.read_bytes() if path.exists() else None

        yield Lake(lake, read_local, work)
        lake.close()
        return
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        boto3.client("glue", region_name="us-east-1").create_database(
            DatabaseInput={"Name": "panorama"}
        )
        lake = make_datalake(lake_settings("aws", tmp_path, file_format))

        def read_s3(key: str) -> bytes | None:
            try:
                data: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None
            return data

        yield Lake(lake, read_s3, work)
        lake.close()


def values(course: str) -> PartitionValues:
    return (LMS, course)


def row(i: int) -> tuple[Any, ...]:
    # Rows hold the non-constant file fields: id, state, modified (course_id is the partition).
    return (i, '{"a": "x\\ny"}', "2024-01-02 03:04:05.123456")


def test_create_table_is_idempotent(datalake: Lake) -> None:
    table = studentmodule()
    datalake.lake.create_table(table)
    datalake.lake.create_table(table)
    assert datalake.lake.partitions(table) == set()


def test_upload_puts_the_bytes_at_the_key(datalake: Lake) -> None:
    table = studentmodule()
    source = datalake.file(table, [row(1)])
    expected = source.read_bytes()
    key = datalake.lake.key(table, values(COURSES[0]))
    datalake.lake.upload(source, key)
    assert datalake.read(key) == expected
    # A new upload replaces the object whole.
    newer = datalake.file(table, [row(2), row(3)])
    newer_bytes = newer.read_bytes()
    datalake.lake.upload(newer, key)
    assert datalake.read(key) == newer_bytes


def test_upload_async_then_wait(datalake: Lake) -> None:
    table = studentmodule()
    expected = {}
    for i, course in enumerate(COURSES):
        source = datalake.file(table, [row(i)])
        key = datalake.lake.key(table, values(course))
        expected[key] = source.read_bytes()
        datalake.lake.upload_async(source, key)
    datalake.lake.wait_uploads()
    assert {key: datalake.read(key) for key in expected} == expected


def test_added_partitions_are_listed_once(datalake: Lake) -> None:
    table = studentmodule()
    datalake.lake.create_table(table)
    for i, course in enumerate(COURSES):
        datalake.put(table, values(course), [row(i)])
    datalake.lake.add_partitions(table, [values(c) for c in COURSES])
    assert datalake.lake.partitions(table) == {values(c) for c in COURSES}
    # Registering again (a second run) changes nothing.
    datalake.lake.add_partitions(table, [values(c) for c in COURSES])
    assert datalake.lake.partitions(table) == {values(c) for c in COURSES}


def test_table_without_partition_keys(datalake: Lake) -> None:
    settings = dataclasses.replace(datalake.lake.settings, base_partitions=())
    lake = type(datalake.lake)(settings)
    try:
        table = unpartitioned()
        lake.create_table(table)
        key = lake.key(table, ())
        assert key == f"openedx/plain/plain.{settings.file_format}"
        lake.upload(datalake.file(table, [(1,), (2,)]), key)
        lake.add_partitions(table, [()])
        assert lake.partitions(table) == {()}
        lake.add_partitions(table, [()])
        assert lake.partitions(table) == {()}
        data = datalake.read(key)
        assert data is not None
        if settings.file_format == "csv":
            assert data == b'"id"\n"1"\n"2"\n'
        else:
            assert pq.read_table(pa.BufferReader(data)).to_pylist() == [{"id": 1}, {"id": 2}]
    finally:
        lake.close()


def test_remove_partitions_unregisters_and_deletes_the_file(datalake: Lake) -> None:
    table = studentmodule()
    datalake.lake.create_table(table)
    keys = {c: datalake.put(table, values(c), [row(1)]) for c in COURSES}
    datalake.lake.add_partitions(table, [values(c) for c in COURSES])
    datalake.lake.remove_partitions(table, [values(COURSES[0]), values(COURSES[2])])
    assert datalake.lake.partitions(table) == {values(COURSES[1])}
    assert datalake.read(keys[COURSES[0]]) is None
    assert datalake.read(keys[COURSES[2]]) is None
    assert datalake.read(keys[COURSES[1]]) is not None
    # Removing what is gone already is fine.
    datalake.lake.remove_partitions(table, [values(COURSES[0])])
    datalake.lake.remove_partitions(table, [])


def test_state_round_trip(datalake: Lake) -> None:
    key = "openedx/_panorama_state/openedx_raw_x/lms=lms.example.com/state.json"
    assert datalake.lake.read_state(key) is None
    datalake.lake.write_state(key, '{"mark": "2024-01-01 00:00:00.000001", "é": "✓"}')
    assert datalake.lake.read_state(key) == '{"mark": "2024-01-01 00:00:00.000001", "é": "✓"}'
    datalake.lake.write_state(key, "{}")
    assert datalake.lake.read_state(key) == "{}"


def test_create_view_needs_the_raw_table(datalake: Lake) -> None:
    table = studentmodule()
    with pytest.raises(DatalakeError, match="run create-datalake-tables first"):
        datalake.lake.create_view(table)
    datalake.lake.create_table(table)
    datalake.lake.create_view(table)
    datalake.lake.create_view(table)  # or replace


def test_drop_table_is_idempotent_and_keeps_files(datalake: Lake) -> None:
    table = studentmodule()
    datalake.lake.create_table(table)
    datalake.lake.create_view(table)
    key = datalake.put(table, values(COURSES[0]), [row(1)])
    datalake.lake.add_partitions(table, [values(COURSES[0])])
    datalake.lake.drop_table(table)
    datalake.lake.drop_table(table)
    assert datalake.read(key) is not None
    datalake.lake.create_table(table)
    assert datalake.lake.partitions(table) == set()


def test_connection_checks_pass(datalake: Lake) -> None:
    checks = datalake.lake.test_connection()
    assert checks
    assert all(ok for _, ok, _ in checks), checks


def test_changed_partition_fields_drop_the_old_layout(datalake: Lake) -> None:
    """create_table with other partition keys unregisters and deletes the old layout's files."""
    partitioned = studentmodule()
    flat = replace(partitioned, partitions=None)
    datalake.lake.create_table(flat)
    old_key = datalake.put(flat, (LMS,), [("1", COURSES[0], "{}", "2024-01-01 00:00:00")])
    datalake.lake.add_partitions(flat, [(LMS,)])
    datalake.lake.create_table(partitioned)
    assert datalake.lake.partitions(partitioned) == set()
    assert datalake.read(old_key) is None


def test_file_format_switch_drops_the_old_files(datalake: Lake) -> None:
    """create_table with the other file_format unregisters and deletes this installation's files."""
    table = studentmodule()
    datalake.lake.create_table(table)
    old_key = datalake.put(table, values(COURSES[0]), [row(1)])
    datalake.lake.add_partitions(table, [values(COURSES[0])])
    other = "parquet" if datalake.lake.settings.file_format == "csv" else "csv"
    switched = type(datalake.lake)(replace(datalake.lake.settings, file_format=other))
    try:
        assert switched.file_formats(table) == {datalake.lake.settings.file_format}
        switched.create_table(table)
        assert switched.partitions(table) == set()
        assert datalake.read(old_key) is None
        new = Lake(switched, datalake.read, datalake.tmp)
        new_key = new.put(table, values(COURSES[0]), [row(2)])
        switched.add_partitions(table, [values(COURSES[0])])
        assert switched.partitions(table) == {values(COURSES[0])}
        assert switched.file_formats(table) == {other}
        assert datalake.read(new_key) is not None
    finally:
        switched.close()


def test_layout_change_refused_while_another_installation_uses_it(datalake: Lake) -> None:
    partitioned = studentmodule()
    flat = replace(partitioned, partitions=None)
    datalake.lake.create_table(flat)
    ours = datalake.put(flat, (LMS,), [("1", COURSES[0], "{}", "2024-01-01 00:00:00")])
    datalake.put(flat, ("other.example.com",), [("2", COURSES[1], "{}", "2024-01-01 00:00:00")])
    datalake.lake.add_partitions(flat, [(LMS,), ("other.example.com",)])
    with pytest.raises(DatalakeError, match="other installations"):
        datalake.lake.create_table(partitioned)
    assert datalake.read(ours) is not None
    assert len(datalake.lake.partitions(flat)) == 2
