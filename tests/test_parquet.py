"""file_format: parquet — the writer's bound and files, the format switch, Glue tables (moto)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from moto import mock_aws

from panorama_elt import parquet_writer as parquet_module
from panorama_elt import writer as writer_module
from panorama_elt.column_types import parse_column_type
from panorama_elt.datalakes.aws import AwsDatalake
from panorama_elt.errors import DatalakeError, SourceError
from panorama_elt.parquet_writer import ParquetWriter
from panorama_elt.rows import batched
from panorama_elt.settings import FieldSettings, PartitionSettings, TableSettings, load_settings
from panorama_elt.views import create_view_sql
from panorama_elt.writer import Partitions
from tests.builders import datalake_settings
from tests.conftest import local_datalake, mysql_source, template_tables, write_settings
from tests.test_end_to_end import (
    assert_same_rows,
    cli,
    connect,
    full_load,
    own_openedx_db,
    source_rows,
    studentmodule_settings,
    view_rows,
)
from tests.test_fast_path import (
    SplitSpy,
    assert_split,
    load,
    shard_processes,
    split_everything,
)
from tests.test_reliability import finish, panorama

__all__ = ["own_openedx_db", "split_everything"]  # fixtures, used by name below

REGION = "us-east-1"
BUCKET = "panorama-parquet"
LMS = "lms.example.com"


def typed_table(partitioned: bool = True) -> TableSettings:
    fields = tuple(
        FieldSettings(name, parse_column_type(ctype))
        for name, ctype in [
            ("id", "int(11)"),
            ("course_id", "varchar(255)"),
            ("big_u", "bigint(20) unsigned"),
            ("amount", "decimal(10,4)"),
            ("wide", "decimal(65,2)"),
            ("ratio", "double"),
            ("modified", "datetime(6)"),
            ("day", "date"),
            ("took", "time"),
            ("flag", "bit(1)"),
            ("bits", "bit(64)"),
            ("raw", "varbinary(8)"),
        ]
    )
    return TableSettings(
        "typed",
        "db",
        "openedx_raw_typed",
        "openedx_table_typed",
        fields,
        PartitionSettings(("course_id",)) if partitioned else None,
    )


def typed_row(i: int) -> list[Any]:
    """Bytes as the MySQL reader hands them over (partition value first)."""
    return [
        f"course-{i % 7}".encode(),
        str(i).encode(),
        b"18446744073709551615" if i % 2 else b"0",
        b"-12.3400",
        ("9" * 60 + ".25").encode(),
        b"0.1",
        b"0000-00-00 00:00:00.000000" if i % 10 == 0 else b"2024-02-29 12:34:56.789012",
        None if i % 3 == 0 else b"1000-01-01",
        b"-838:59:59",
        b"\x01",
        b"\xff" * 8,
        bytes([i % 256, 0, 255]),
    ]


def expected_record(i: int) -> dict[str, Any]:
    """What the Parquet file must hold for ``typed_row(i)``, written out by hand."""
    return {
        "id": i,
        "big_u": Decimal(18446744073709551615 if i % 2 else 0),
        "amount": Decimal("-12.3400"),
        "wide": "9" * 60 + ".25",
        "ratio": 0.1,
        "modified": None if i % 10 == 0 else datetime(2024, 2, 29, 12, 34, 56, 789012),
        "day": None if i % 3 == 0 else date(1000, 1, 1),
        "took": "-838:59:59",
        "flag": 1,
        "bits": Decimal(2**64 - 1),
        "raw": bytes([i % 256, 0, 255]),
    }


def assert_typed_file(path: Path, ids: list[int]) -> None:
    """The Parquet file of ``typed_row`` rows ``ids``: types, compression and every value."""
    parquet = pq.ParquetFile(path)
    assert parquet.schema_arrow.field("modified").type == pa.timestamp("us")
    assert parquet.schema_arrow.field("big_u").type == pa.decimal128(20, 0)
    assert parquet.schema_arrow.field("amount").type == pa.decimal128(10, 4)
    assert parquet.schema_arrow.field("day").type == pa.date32()
    assert parquet.schema_arrow.field("raw").type == pa.binary()
    assert parquet.schema_arrow.field("id").type == pa.int64()
    assert parquet.schema_arrow.field("ratio").type == pa.float64()
    assert parquet.schema_arrow.field("wide").type == pa.string()
    if parquet.metadata.num_row_groups:
        assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    got = sorted(parquet.read().to_pylist(), key=lambda r: r["id"])
    assert got == [expected_record(i) for i in ids]


def test_many_partitions_stay_within_the_budget_and_read_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny budget: partitions are appended to their CSV files many times before they are
    # converted; tiny groups: some partitions converted alone, others several in one statement.
    monkeypatch.setattr(writer_module, "PENDING_BYTES", 4096)
    monkeypatch.setattr(parquet_module, "GROUP_BYTES", 180_000)
    monkeypatch.setattr(parquet_module, "GROUP_FILES", 2)
    table = typed_table()
    # Course 0 gets most rows (a file above the group bound), the others a few each.
    rows = [typed_row(i) for i in range(3000)] + [typed_row(7 * i) for i in range(430, 1000)]
    writer = ParquetWriter(table, tmp_path)
    parts = writer.write_scan(batched(rows, 100), as_bytes=True)
    sizes = sorted(len(group) for group in parquet_module._groups(list(parts.values())))
    assert sizes == [1, 2, 2, 2]  # course 0 alone, the others two to a statement
    files = writer.finish(parts, as_bytes=True)
    assert sorted(key for key, _ in files) == [(f"course-{n}",) for n in range(7)]
    for (course,), written in files:
        ids = sorted(int(row[1]) for row in rows if row[0].decode() == course)
        assert written.path.suffix == ".parquet"
        assert_typed_file(written.path, ids)
        assert written.rows == len(ids)
        assert written.zero_dates == sum(1 for i in ids if i % 10 == 0)
        assert written.bytes == written.path.stat().st_size
    # Nothing but the finished files is left in the folder.
    assert sorted(tmp_path.iterdir()) == sorted(w.path for _, w in files)


def two_scans(folder: Path, rows: int) -> tuple[ParquetWriter, Partitions]:
    """``typed_row`` 0 .. rows-1 written by two scans (even rows, odd rows, the second in a
    folder of its own) and merged, as for a table read by two processes."""
    table = typed_table()
    (folder / "second").mkdir()
    writer = ParquetWriter(table, folder)
    parts = writer.write_scan(batched([typed_row(i) for i in range(0, rows, 2)], 70), True)
    others = ParquetWriter(table, folder / "second").write_scan(
        batched([typed_row(i) for i in range(1, rows, 2)], 70), True
    )
    writer.merge(parts, others)
    return writer, parts


@pytest.mark.parametrize("group_bytes", [40_000, 1 << 20], ids=["alone", "together"])
def test_partitions_of_two_scans_are_read_from_both_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group_bytes: int
) -> None:
    """A table read by two processes: each partition's rows are in two CSV files, converted
    together (a partition to a statement, or all in one)."""
    monkeypatch.setattr(parquet_module, "GROUP_BYTES", group_bytes)
    first, parts = two_scans(tmp_path, 1400)
    sizes = [len(g) for g in parquet_module._groups(list(parts.values()))]
    assert sizes == ([1] * 7 if group_bytes == 40_000 else [7])
    files = first.finish(parts, True)
    assert len(files) == 7
    for (course,), written in files:
        ids = [i for i in range(1400) if f"course-{i % 7}" == course]
        assert_typed_file(written.path, ids)
        assert written.rows == len(ids)
    assert sorted(tmp_path.rglob("*.*")) == sorted(w.path for _, w in files)


def test_a_value_longer_than_the_readers_default_line_reads_back_whole(tmp_path: Path) -> None:
    table = dataclasses.replace(
        typed_table(partitioned=False),
        fields=(
            FieldSettings("id", parse_column_type("int(11)")),
            FieldSettings("state", parse_column_type("longtext")),
        ),
    )
    long_text = ('{"answer": "\\n\u00e9' + "x" * (5 << 20) + '"}').encode()
    rows = [
        [b"1", long_text],
        [b"2", b'line\nbreak\r\\ and "quotes"'],
        [b"3", None],
        [b"4", b"\\N"],
    ]
    ((_, written),) = ParquetWriter(table, tmp_path).write(iter([rows]), as_bytes=True)
    got = sorted(pq.read_table(written.path).to_pylist(), key=lambda r: r["id"])
    assert got == [
        {"id": 1, "state": long_text.decode()},
        {"id": 2, "state": 'line\nbreak\r\\ and "quotes"'},
        {"id": 3, "state": None},
        {"id": 4, "state": "\\N"},  # the text of the NULL token is no NULL
    ]


def test_a_temp_folder_named_like_a_hive_partition_changes_no_value(tmp_path: Path) -> None:
    folder = tmp_path / "id=5" / "course_id=x"
    folder.mkdir(parents=True)
    table = typed_table()
    ((_, written),) = ParquetWriter(table, folder).write(iter([[typed_row(1)]]), as_bytes=True)
    assert pq.read_table(written.path).to_pylist() == [expected_record(1)]


def test_a_table_without_rows_gets_one_file_with_its_schema(tmp_path: Path) -> None:
    table = typed_table(partitioned=False)
    ((key, written),) = ParquetWriter(table, tmp_path).write(iter(()), as_bytes=True)
    assert key == ()
    read = pq.read_table(written.path)
    assert read.num_rows == 0
    assert read.column_names == [f.name for f in table.file_fields]


def test_text_in_a_numeric_column_fails_the_table_naming_the_column(tmp_path: Path) -> None:
    table = typed_table(partitioned=False)
    course, _, *rest = typed_row(1)
    row = [b"not a number", course, *rest]
    with pytest.raises(SourceError, match="typed: column id \\(int\\(11\\)\\) holds a value"):
        ParquetWriter(table, tmp_path).write(iter([[row]]), as_bytes=True)


def parquet_lake(path: Path, **extra: Any) -> dict[str, Any]:
    return local_datalake(path, file_format="parquet", **extra)


def test_tables_split_in_two_processes_write_parquet(
    tmp_path: Path,
    mysql_server: dict[str, Any],
    openedx_db: str,
    split_everything: SplitSpy,
) -> None:
    source = mysql_source(mysql_server, openedx_db, template_tables(), name="openedx_mysql")
    settings_file = write_settings(tmp_path / "s.yaml", parquet_lake(tmp_path / "lake"), [source])
    load(settings_file, "--force")
    settings = load_settings(settings_file)
    assert "courseware_studentmodule" in split_everything.shard_queries
    assert_split(split_everything, mysql_server, openedx_db, "courseware_studentmodule")
    for table in settings.tables:
        assert_same_rows(
            source_rows(mysql_server, openedx_db, table), view_rows(settings, table), table.name
        )
    lake = settings.datalake.path
    assert lake is not None
    assert list(lake.rglob("*.csv")) == []
    assert len(list(lake.glob("openedx/courseware_studentmodule/**/*.parquet"))) == 8


def studentmodule_only(path: Path, server: dict[str, Any], database: str, lake: Any) -> Path:
    tables = [t for t in template_tables() if t["name"] == "courseware_studentmodule"]
    return write_settings(path, lake, [mysql_source(server, database, tables)])


def set_file_format(settings_file: Path, file_format: str) -> None:
    data = yaml.safe_load(settings_file.read_text())
    data["datalake"]["file_format"] = file_format
    settings_file.write_text(yaml.safe_dump(data, sort_keys=False))


def test_switching_a_csv_lake_to_parquet(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str
) -> None:
    """README's steps: set file_format, create-datalake-tables, create-datalake-views, --force."""
    lake_path = tmp_path / "lake"
    ours = studentmodule_only(
        tmp_path / "s.yaml", mysql_server, openedx_db, local_datalake(lake_path)
    )
    load(ours, "--force")
    table_root = lake_path / "openedx" / "courseware_studentmodule"
    assert len(list(table_root.rglob("*.csv"))) == 8
    set_file_format(ours, "parquet")
    # Before the catalog is switched, a run refuses rather than mix formats in one table.
    result = cli(ours, "extract-and-load", "--all", "--force")
    assert result.exit_code == 1
    assert "holds csv files and datalake.file_format is parquet" in result.output
    assert "run create-datalake-tables --tables courseware_studentmodule first" in result.output
    load(ours, "--force")
    settings = load_settings(ours)
    table = settings.tables[0]
    assert list(table_root.rglob("*.csv")) == []
    assert len(list(table_root.rglob("*.parquet"))) == 8
    assert_same_rows(
        source_rows(mysql_server, openedx_db, table), view_rows(settings, table), table.name
    )


def test_a_column_added_before_any_parquet_file_holds_it(
    tmp_path: Path, mysql_server: dict[str, Any], own_openedx_db: str
) -> None:
    """An Open edX upgrade adds a column: the views work at once (NULL), and after the next
    run hold the source's values."""
    settings_file = studentmodule_settings(tmp_path, mysql_server, own_openedx_db, "parquet")
    full_load(settings_file)
    with connect(mysql_server, own_openedx_db) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE courseware_studentmodule ADD COLUMN note varchar(20) DEFAULT 'x'")
    for command in (
        ["set-tables-fields", "--all"],
        ["create-datalake-tables", "--all"],
        ["create-datalake-views", "--all"],
    ):
        result = cli(settings_file, *command)
        assert result.exit_code == 0, result.output
    settings = load_settings(settings_file)
    table = settings.tables[0]
    assert table.file_fields[-1].name == "note"
    old = view_rows(settings, table)
    assert len(old) == len(source_rows(mysql_server, own_openedx_db, table))
    assert {r[len(table.fields) - 1] for r in old} == {None}
    result = cli(settings_file, "extract-and-load", "--all", "--force")
    assert result.exit_code == 0, result.output
    assert_same_rows(
        source_rows(mysql_server, own_openedx_db, table), view_rows(settings, table), table.name
    )


def test_a_parquet_run_as_a_process_leaves_no_temp_file_and_no_process(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str
) -> None:
    """panorama.py as cron runs it: its conversion workers are gone when it exits, and so is
    every file it put in TMPDIR."""
    settings_file = studentmodule_only(
        tmp_path / "s.yaml", mysql_server, openedx_db, parquet_lake(tmp_path / "lake")
    )
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    for args in (
        ["create-datalake-tables", "--all"],
        ["create-datalake-views", "--all"],
        ["extract-and-load", "--all", "--force"],
    ):
        process = panorama(settings_file, *args, env={"TMPDIR": str(private_tmp)})
        code, out = finish(process)
        assert code == 0, out
        assert list(private_tmp.iterdir()) == [], "temp files left behind"
        assert not shard_processes(parent=process.pid), "a worker outlived the run"
        assert not shard_processes(tmpdir=private_tmp), "a worker outlived the run"
    settings = load_settings(settings_file)
    table = settings.tables[0]
    assert_same_rows(
        source_rows(mysql_server, openedx_db, table), view_rows(settings, table), table.name
    )


def test_switch_refused_while_another_installation_has_csv_partitions(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str
) -> None:
    lake_path = tmp_path / "lake"
    ours = studentmodule_only(
        tmp_path / "s.yaml", mysql_server, openedx_db, local_datalake(lake_path)
    )
    other = studentmodule_only(
        tmp_path / "o.yaml",
        mysql_server,
        openedx_db,
        local_datalake(lake_path, lms="other.example.com"),
    )
    load(ours, "--force")
    load(other, "--force")
    set_file_format(ours, "parquet")
    result = cli(ours, "create-datalake-tables", "--all")
    assert result.exit_code == 1
    assert "other installations (other.example.com) still have partitions" in result.output
    # Nothing was removed: both installations still read their rows.
    settings = load_settings(other)
    table = settings.tables[0]
    expected = source_rows(mysql_server, openedx_db, table)
    assert_same_rows(expected, view_rows(settings, table, lms="other.example.com"), table.name)
    assert_same_rows(expected, view_rows(settings, table, lms=LMS), table.name)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"file_format": "orc"}, "datalake.file_format: must be csv or parquet, got 'orc'"),
        (
            {"file_format": "parquet", "compression": "gzip"},
            "datalake.compression: gzip applies to csv files",
        ),
    ],
)
def test_bad_file_format_settings(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    settings_file = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path, **changes), [])
    result = cli(settings_file, "test-connections")
    assert result.exit_code != 0
    assert message in result.output
    assert len([line for line in result.output.splitlines() if "datalake." in line]) == 1


# AWS: Glue tables with the Parquet SerDe and typed columns (moto)


@pytest.fixture
def parquet_aws() -> Iterator[AwsDatalake]:
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        boto3.client("glue", region_name=REGION).create_database(DatabaseInput={"Name": "panorama"})
        settings = datalake_settings(
            type="aws",
            bucket=BUCKET,
            aws_region=REGION,
            athena_output_location=f"s3://{BUCKET}/athena-results/",
            file_format="parquet",
        )
        lake = AwsDatalake(settings)
        yield lake
        lake.close()


def glue() -> Any:
    return boto3.client("glue", region_name=REGION)


def test_glue_table_and_partitions_are_parquet_with_typed_columns(
    parquet_aws: AwsDatalake, tmp_path: Path
) -> None:
    table = typed_table()
    parquet_aws.create_table(table)
    found = glue().get_table(DatabaseName="panorama", Name="openedx_raw_typed")["Table"]
    storage = found["StorageDescriptor"]
    assert storage["SerdeInfo"]["SerializationLibrary"] == (
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    )
    assert storage["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert {c["Name"]: c["Type"] for c in storage["Columns"]} == {
        "id": "bigint",
        "big_u": "decimal(20,0)",
        "amount": "decimal(10,4)",
        "wide": "string",
        "ratio": "double",
        "modified": "bigint",  # microseconds since 1970: Athena reads Hive timestamps to ms
        "day": "date",
        "took": "string",
        "flag": "bigint",
        "bits": "decimal(20,0)",
        "raw": "binary",
    }
    assert [k["Name"] for k in found["PartitionKeys"]] == ["lms", "course_id"]
    files = ParquetWriter(table, tmp_path).write(batched([typed_row(1)]), as_bytes=True)
    ((course,), written) = files[0]
    values = (LMS, course)
    key = parquet_aws.key(table, values)
    assert key == f"openedx/typed/lms={LMS}/course_id={course}/typed.parquet"
    parquet_aws.upload(written.path, key)
    parquet_aws.add_partitions(table, [values])
    (partition,) = glue().get_partitions(DatabaseName="panorama", TableName="openedx_raw_typed")[
        "Partitions"
    ]
    assert partition["Values"] == list(values)
    assert partition["StorageDescriptor"]["SerdeInfo"] == storage["SerdeInfo"]
    assert partition["StorageDescriptor"]["Location"] == (
        f"s3://{BUCKET}/openedx/typed/lms={LMS}/course_id={course}/"
    )
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"]
    (path := tmp_path / "back.parquet").write_bytes(body.read())
    assert pq.read_table(path).to_pylist() == [expected_record(1)]
    assert parquet_aws.file_formats(table) == {"parquet"}


def test_glue_format_switch_replaces_this_installations_partitions(
    parquet_aws: AwsDatalake, tmp_path: Path
) -> None:
    table = typed_table()
    csv_lake = AwsDatalake(dataclasses.replace(parquet_aws.settings, file_format="csv"))
    csv_lake.create_table(table)
    csv_files = writer_module.CsvWriter(table, tmp_path).write(
        batched([typed_row(1)]), as_bytes=True
    )
    ((course,), written) = csv_files[0]
    old_key = csv_lake.key(table, (LMS, course))
    csv_lake.upload(written.path, old_key)
    csv_lake.add_partitions(table, [(LMS, course)])
    assert parquet_aws.file_formats(table) == {"csv"}
    # Another installation's partition in the old format: the switch is refused.
    glue().batch_create_partition(
        DatabaseName="panorama",
        TableName="openedx_raw_typed",
        PartitionInputList=[{"Values": ["other.example.com", course]}],
    )
    with pytest.raises(DatalakeError, match="other installations"):
        parquet_aws.create_table(table)
    glue().batch_delete_partition(
        DatabaseName="panorama",
        TableName="openedx_raw_typed",
        PartitionsToDelete=[{"Values": ["other.example.com", course]}],
    )
    parquet_aws.create_table(table)
    assert parquet_aws.file_formats(table) == {"parquet"}
    assert parquet_aws.partitions(table) == set()
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="openedx/typed/").get("KeyCount") == 0
    csv_lake.close()


def test_athena_view_sql_of_a_parquet_table() -> None:
    settings = datalake_settings(type="aws", file_format="parquet")
    sql = create_view_sql(typed_table(), settings, "athena")
    assert (
        'CAST(from_unixtime_nanos(CAST("modified" AS DECIMAL(38,0)) * 1000) AS TIMESTAMP(6)) '
        'AS "modified"'
    ) in sql
    assert 'CAST("big_u" AS DECIMAL(20,0)) AS "big_u"' in sql
    assert 'CAST("day" AS DATE) AS "day"' in sql
    # Partition values are the encoded text of either format.
    assert "NULLIF(\"course_id\", '\\N')" in sql
    assert "NULLIF(\"lms\", '\\N')" in sql
    assert 'NULLIF("id"' not in sql
