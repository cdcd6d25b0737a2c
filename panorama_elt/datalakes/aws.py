"""AWS datalake: files in S3, raw tables and partitions in the Glue catalog, typed views by Athena."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from panorama_elt.__about__ import __version__
from panorama_elt.column_types import ColumnType
from panorama_elt.datalakes.base import Datalake, PartitionValues
from panorama_elt.errors import DatalakeError, one_line
from panorama_elt.paths import (
    STATE_FOLDER,
    base_values,
    folder_of,
    other_suffix,
    partition_folder,
    partition_names,
    table_folder,
)
from panorama_elt.settings import DatalakeSettings, TableSettings
from panorama_elt.views import create_view_sql, quote_name

_T = TypeVar("_T")

# Glue's limits per call (the botocore model says so too): 100 partitions to create, 25 to delete.
CREATE_BATCH = 100
DELETE_BATCH = 25
# S3 DeleteObjects takes at most 1000 keys.
S3_DELETE_BATCH = 1000
MIB = 1024 * 1024
# Files a run uploads while extraction goes on, each with a few multipart threads.
UPLOAD_WORKERS = 3
TRANSFER_THREADS = 4
TRANSFER = TransferConfig(
    multipart_threshold=64 * MIB,
    multipart_chunksize=32 * MIB,  # 10,000 parts of 32 MiB: files up to 320 GiB
    max_concurrency=TRANSFER_THREADS,
    use_threads=True,
)
# Athena keeps each query's status; poll it with exponential backoff.
POLL_FIRST, POLL_MAX = 0.2, 5.0

STORAGE_KEYS = (
    "Columns",
    "Location",
    "InputFormat",
    "OutputFormat",
    "Compressed",
    "NumberOfBuckets",
    "SerdeInfo",
    "BucketColumns",
    "SortColumns",
    "Parameters",
    "SkewedInfo",
    "StoredAsSubDirectories",
)


def _file_format(glue_table: dict[str, Any]) -> str:
    """csv or parquet: the format of a Glue table (or partition), from its SerDe."""
    serde = glue_table.get("StorageDescriptor", {}).get("SerdeInfo", {})
    return "parquet" if serde.get("SerializationLibrary") == PARQUET_SERDE else "csv"


def aws_reason(exc: BaseException) -> str:
    """The service's own error code and message (or botocore's text); never credentials."""
    if isinstance(exc, Boto3Error) and isinstance(exc.__context__, ClientError):
        exc = exc.__context__  # upload_file wraps the S3 error in S3UploadFailedError
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Error"
        return one_line(f"{code}: {error.get('Message') or exc}")
    return one_line(exc)


class AwsError(DatalakeError):
    """An AWS call that failed; ``code`` is the service's error code, when it sent one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn botocore and boto3 failures of ``what`` into one-line AwsErrors."""
    try:
        yield
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        raise AwsError(f"{what}: {aws_reason(exc)}", code) from exc


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def table_input(table: TableSettings, settings: DatalakeSettings) -> dict[str, Any]:
    """The Glue TableInput of a raw table: all-string CSV columns read with OpenCSVSerde, or
    typed Parquet columns (``file_format: parquet``)."""
    location = f"s3://{settings.bucket}/{table_folder(table, settings)}/"
    spec: dict[str, Any] = {
        "Name": table.datalake_table_name,
        "Description": f"panorama-elt raw table of {table.datasource}.{table.name}",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "EXTERNAL": "TRUE",
            "classification": "csv",
            "skip.header.line.count": "1",
        },
        "PartitionKeys": [
            {"Name": name.lower(), "Type": "string"} for name in partition_names(table, settings)
        ],
        "StorageDescriptor": {
            "Columns": [{"Name": f.name.lower(), "Type": "string"} for f in table.file_fields],
            "Location": location,
            "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "SerdeInfo": {
                "SerializationLibrary": "org.apache.hadoop.hive.serde2.OpenCSVSerde",
                "Parameters": {"separatorChar": ",", "quoteChar": '"', "escapeChar": "\\"},
            },
        },
    }
    if settings.file_format == "parquet":
        spec["Parameters"] = {"EXTERNAL": "TRUE", "classification": "parquet"}
        spec["StorageDescriptor"].update(
            Columns=[
                {"Name": f.name.lower(), "Type": hive_type(f.type)} for f in table.file_fields
            ],
            InputFormat="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            OutputFormat="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            SerdeInfo={
                "SerializationLibrary": PARQUET_SERDE,
                "Parameters": {"serialization.format": "1"},
            },
        )
    return spec


def hive_type(ctype: ColumnType) -> str:
    """The Glue (Hive DDL) type of a Parquet file column (the type of the typed view, see parquet_writer).

    DATETIME/TIMESTAMP columns are Parquet TIMESTAMP_MICROS declared ``bigint``: Athena reads
    the timestamps of Hive tables to milliseconds only, and reads the same column declared
    bigint as its microseconds since 1970, which the typed view turns into TIMESTAMP(6).
    """
    view_type = ctype.view_type
    if ctype.kind == "datetime":
        return "bigint"
    if view_type in ("BIGINT", "DOUBLE", "DATE") or view_type.startswith("DECIMAL("):
        return view_type.lower()
    if view_type == "VARBINARY":
        return "binary"
    return "string"


class AwsDatalake(Datalake):
    """Files in ``s3://<bucket>/``; raw tables and partitions in Glue; typed views by Athena."""

    dialect = "athena"
    #: How long an Athena statement may take before it is stopped and reported.
    query_timeout = 300.0

    def __init__(self, settings: DatalakeSettings) -> None:
        super().__init__(settings)
        if not settings.bucket:
            raise DatalakeError("datalake.panorama_raw_data_bucket: the S3 bucket is required")
        self.bucket = settings.bucket
        if bool(settings.aws_access_key) != bool(settings.aws_secret_access_key):
            raise DatalakeError(
                "datalake.aws_access_key and datalake.aws_secret_access_key: set both, or neither "
                "to use the standard AWS credential chain (environment, profile, instance role)"
            )
        config = Config(
            # total_max_attempts counts the first try, as AWS_MAX_ATTEMPTS does; botocore's
            # max_attempts would count retries only (one more call than the setting says).
            retries={"mode": "standard", "total_max_attempts": settings.aws_max_attempts},
            max_pool_connections=UPLOAD_WORKERS * TRANSFER_THREADS + 4,
            user_agent_extra=f"panorama-elt/{__version__}",
        )
        with aws_errors("AWS session"):
            if settings.aws_access_key:
                self.session = boto3.session.Session(
                    aws_access_key_id=settings.aws_access_key,
                    aws_secret_access_key=settings.aws_secret_access_key,
                    region_name=settings.aws_region,
                )
            else:
                self.session = boto3.session.Session(
                    profile_name=settings.aws_profile, region_name=settings.aws_region
                )
            # endpoint_url serves S3-compatible stores, and a moto server for all three.
            self.s3 = self.session.client("s3", endpoint_url=settings.endpoint_url, config=config)
            self.glue = self.session.client(
                "glue", endpoint_url=settings.endpoint_url, config=config
            )
            self.athena = self.session.client(
                "athena", endpoint_url=settings.endpoint_url, config=config
            )
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        # Bounds the finished files waiting on local disk for their upload.
        self._slots = threading.BoundedSemaphore(2 * UPLOAD_WORKERS)

    # Connection checks

    def test_connection(self) -> list[tuple[str, bool, str]]:
        return [
            self._check(f"s3://{self.bucket}", self._probe_bucket),
            self._check(f"glue database {self.settings.database}", self._probe_database),
            self._check(f"athena workgroup {self.settings.workgroup}", self._probe_workgroup),
        ]

    def _check(self, what: str, probe: Callable[[], str]) -> tuple[str, bool, str]:
        try:
            return (what, True, probe())
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            return (what, False, aws_reason(exc))
        except DatalakeError as exc:
            return (what, False, str(exc))

    def _probe_bucket(self) -> str:
        # Under the state folder: the policy that lets runs keep their marks allows it.
        prefix = self.settings.base_prefix
        root = f"{prefix}/{STATE_FOLDER}" if prefix else STATE_FOLDER
        key = f"{root}/.panorama-probe-{uuid.uuid4().hex}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"ok")
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        return f"can write and delete objects under s3://{self.bucket}/{key.rsplit('/', 1)[0]}/"

    def _probe_database(self) -> str:
        database = self.glue.get_database(Name=self.settings.database)["Database"]
        return f"database {database['Name']} exists"

    def _probe_workgroup(self) -> str:
        group = self.athena.get_work_group(WorkGroup=self.settings.workgroup)["WorkGroup"]
        state = group.get("State", "ENABLED")
        if state != "ENABLED":
            raise DatalakeError(f"workgroup {self.settings.workgroup} is {state}")
        config = group.get("Configuration", {})
        output = (config.get("ResultConfiguration") or {}).get("OutputLocation")
        managed = (config.get("ManagedQueryResultsConfiguration") or {}).get("Enabled")
        if config.get("EnforceWorkGroupConfiguration") and output:
            return f"{state}, query results to {output} (enforced by the workgroup)"
        if self.settings.athena_output_location:
            return f"{state}, query results to {self.settings.athena_output_location}"
        if output:
            return f"{state}, query results to {output}"
        if managed:
            return f"{state}, managed query results"
        raise DatalakeError(
            f"workgroup {self.settings.workgroup} has no query result location: set "
            "datalake.athena_output_location or the workgroup's query result location"
        )

    # Files

    def upload(self, local_file: Path, key: str) -> None:
        """Upload ``local_file`` to ``key`` (multipart when large, CRC32-checked by S3).

        An S3 object is replaced atomically: readers see the old file or the new one. The
        local file is removed once uploaded, as the local datalake moves it.
        """
        content_type = (
            "application/gzip"
            if key.endswith(".gz")
            else "application/vnd.apache.parquet"
            if key.endswith(".parquet")
            else "text/csv"
        )
        what = f"upload of s3://{self.bucket}/{key}"
        with aws_errors(what):
            try:
                self.s3.upload_file(
                    str(local_file),
                    self.bucket,
                    key,
                    ExtraArgs={"ChecksumAlgorithm": "CRC32", "ContentType": content_type},
                    Config=TRANSFER,
                )
            except OSError as exc:
                raise DatalakeError(f"{what}: {local_file}: {exc.strerror or exc}") from exc
            # After a switch of `compression`, the partition folder would hold both t.csv and
            # t.csv.gz, and Athena would read every row twice.
            self.s3.delete_object(Bucket=self.bucket, Key=other_suffix(key))
        local_file.unlink(missing_ok=True)

    def upload_async(self, local_file: Path, key: str) -> None:
        """Start uploading in the background; a failed earlier upload is raised here."""
        self._check_uploads(wait=False)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(UPLOAD_WORKERS, thread_name_prefix="panorama-upload")
        self._slots.acquire()
        try:
            future = self._pool.submit(self.upload, local_file, key)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)

    def wait_uploads(self) -> None:
        """Wait for every background upload; raise if any failed."""
        self._check_uploads(wait=True)

    def _check_uploads(self, wait: bool) -> None:
        if wait or any(f.done() and f.exception() for f in self._pending):
            # After a failure the rest still finish, so nothing outlives this call.
            wait_futures(self._pending)
        failures = [e for f in self._pending if f.done() and (e := f.exception()) is not None]
        self._pending = [f for f in self._pending if not f.done()]
        if not failures:
            return
        first = failures[0]
        if len(failures) == 1 and isinstance(first, DatalakeError):
            raise first
        raise DatalakeError(f"{len(failures)} uploads failed; the first: {first}") from first

    def read_state(self, key: str) -> str | None:
        try:
            with aws_errors(f"read of s3://{self.bucket}/{key}"):
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
                with body:
                    text: str = body.read().decode("utf-8")
        except AwsError as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        return text

    def write_state(self, key: str, text: str) -> None:
        with aws_errors(f"write of s3://{self.bucket}/{key}"):
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=text.encode("utf-8"),
                ContentType="application/json",
                ChecksumAlgorithm="CRC32",
            )

    # Raw tables and partitions (Glue)

    def create_table(self, table: TableSettings) -> None:
        spec = table_input(table, self.settings)
        try:
            with self._glue_errors(table, "CreateTable"):
                self.glue.create_table(DatabaseName=self.settings.database, TableInput=spec)
        except AwsError as exc:
            if exc.code != "AlreadyExistsException":
                raise
            with self._glue_errors(table, "GetTable"):
                existing = self.glue.get_table(
                    DatabaseName=self.settings.database, Name=table.datalake_table_name
                )["Table"]
            old_names = [k["Name"] for k in existing.get("PartitionKeys", [])]
            same_layout = old_names == [k["Name"] for k in spec["PartitionKeys"]] and (
                _file_format(existing) == self.settings.file_format
            )
            if not same_layout:
                self._drop_other_layout(table, old_names)
            with self._glue_errors(table, "UpdateTable"):
                self.glue.update_table(DatabaseName=self.settings.database, TableInput=spec)
            if same_layout:
                self._update_partition_columns(table, spec)

    def drop_table(self, table: TableSettings) -> None:
        self.drop_sql_view(table.datalake_table_view)
        try:
            with self._glue_errors(table, "DeleteTable"):
                self.glue.delete_table(
                    DatabaseName=self.settings.database, Name=table.datalake_table_name
                )
        except AwsError as exc:
            if exc.code != "EntityNotFoundException":
                raise

    def partitions(self, table: TableSettings) -> set[PartitionValues]:
        if not partition_names(table, self.settings):
            # The table itself is the one partition, in place once the table exists.
            self._storage_descriptor(table)
            return {()}
        found: set[PartitionValues] = set()
        pages = self.glue.get_paginator("get_partitions").paginate(
            DatabaseName=self.settings.database,
            TableName=table.datalake_table_name,
            ExcludeColumnSchema=True,
        )
        try:
            with self._glue_errors(table, "GetPartitions"):
                for page in pages:
                    found.update(tuple(p["Values"]) for p in page.get("Partitions", []))
        except AwsError as exc:
            raise self._missing_table(table, exc) from exc
        return found

    def file_formats(self, table: TableSettings) -> set[str]:
        """The raw table's format (its partitions copy its storage descriptor)."""
        return {_file_format({"StorageDescriptor": self._storage_descriptor(table)})}

    def add_partitions(self, table: TableSettings, partitions: Iterable[PartitionValues]) -> None:
        new = [p for p in partitions if p]  # () = a table without partition keys: nothing to add
        if not new:
            return
        storage = self._storage_descriptor(table)
        entries = [
            {
                "Values": list(values),
                "StorageDescriptor": {**storage, "Location": self._folder_url(table, values)},
            }
            for values in new
        ]
        for batch in chunks(entries, CREATE_BATCH):
            with self._glue_errors(table, "BatchCreatePartition"):
                response = self.glue.batch_create_partition(
                    DatabaseName=self.settings.database,
                    TableName=table.datalake_table_name,
                    PartitionInputList=list(batch),
                )
            self._raise_batch_errors(
                table, "BatchCreatePartition", response, "AlreadyExistsException"
            )

    def remove_partitions(
        self, table: TableSettings, partitions: Iterable[PartitionValues]
    ) -> None:
        gone = list(partitions)
        registered = [p for p in gone if p]
        for batch in chunks(registered, DELETE_BATCH):
            with self._glue_errors(table, "BatchDeletePartition"):
                response = self.glue.batch_delete_partition(
                    DatabaseName=self.settings.database,
                    TableName=table.datalake_table_name,
                    PartitionsToDelete=[{"Values": list(values)} for values in batch],
                )
            self._raise_batch_errors(
                table, "BatchDeletePartition", response, "EntityNotFoundException"
            )
        # Unregistered first, deleted second: a crash in between leaves only unread files.
        keys: list[str] = []
        for values in gone:
            keys.extend(self._objects_in(table, partition_folder(table, self.settings, values)))
        for key_batch in chunks(keys, S3_DELETE_BATCH):
            with aws_errors(f"{table.datalake_table_name}: S3 DeleteObjects"):
                response = self.s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in key_batch], "Quiet": True},
                )
            errors = response.get("Errors") or []
            if errors:
                e = errors[0]
                raise DatalakeError(
                    f"{table.datalake_table_name}: S3 DeleteObjects: {len(errors)} objects not "
                    f"deleted; s3://{self.bucket}/{e.get('Key')}: {e.get('Code')}: {e.get('Message')}"
                )

    def _all_partitions(self, table: TableSettings) -> list[dict[str, Any]]:
        """Every registered partition of the table, with its storage descriptor."""
        found: list[dict[str, Any]] = []
        pages = self.glue.get_paginator("get_partitions").paginate(
            DatabaseName=self.settings.database, TableName=table.datalake_table_name
        )
        with self._glue_errors(table, "GetPartitions"):
            for page in pages:
                found.extend(page.get("Partitions", []))
        return found

    def _drop_other_layout(self, table: TableSettings, old_names: list[str]) -> None:
        """The partition keys or the file format changed: unregister and delete this
        installation's old partitions (a table without partition keys: its one file).

        Other installations' partitions are never touched: while they remain, the change is
        refused, since the table cannot serve both layouts.
        """
        base = base_values(self.settings)
        old = [tuple(p["Values"]) for p in self._all_partitions(table)]
        others = sorted({p[: len(base)] for p in old if p[: len(base)] != base})
        if others:
            raise DatalakeError(
                f"{table.name}: the partition fields or the file format changed, but other "
                f"installations ({', '.join('/'.join(o) for o in others[:3])}) still have "
                "partitions in the old "
                "layout; every installation must reload: drop-datalake-tables, then "
                "create-datalake-tables and extract-and-load --force from each"
            )
        for batch in chunks(old, DELETE_BATCH):
            with self._glue_errors(table, "BatchDeletePartition"):
                self.glue.batch_delete_partition(
                    DatabaseName=self.settings.database,
                    TableName=table.datalake_table_name,
                    PartitionsToDelete=[{"Values": list(values)} for values in batch],
                )
        folders = [folder_of(table, self.settings, old_names, values) for values in old]
        if not old_names:
            folders.append(table_folder(table, self.settings))
        keys: list[str] = []
        for folder in folders:
            keys.extend(self._objects_in(table, folder))
        for key_batch in chunks(keys, S3_DELETE_BATCH):
            with aws_errors(f"{table.datalake_table_name}: S3 DeleteObjects"):
                self.s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in key_batch], "Quiet": True},
                )

    def _update_partition_columns(self, table: TableSettings, spec: dict[str, Any]) -> None:
        """Give every partition the table's new column list.

        Athena reads a text partition with the partition's own schema: without this, a column
        added by set-tables-fields would read as NULL in every partition registered before.
        """
        columns = spec["StorageDescriptor"]["Columns"]
        stale = [
            p
            for p in self._all_partitions(table)
            if p["StorageDescriptor"].get("Columns") != columns
        ]
        for batch in chunks(stale, CREATE_BATCH):
            entries = [
                {
                    "PartitionValueList": p["Values"],
                    "PartitionInput": {
                        "Values": p["Values"],
                        "StorageDescriptor": {**p["StorageDescriptor"], "Columns": columns},
                    },
                }
                for p in batch
            ]
            with self._glue_errors(table, "BatchUpdatePartition"):
                response = self.glue.batch_update_partition(
                    DatabaseName=self.settings.database,
                    TableName=table.datalake_table_name,
                    Entries=entries,
                )
            if response.get("Errors"):
                error = response["Errors"][0]
                raise DatalakeError(
                    f"{table.datalake_table_name}: glue BatchUpdatePartition: "
                    f"{error.get('ErrorDetail', {}).get('ErrorMessage', 'failed')}"
                )

    def _objects_in(self, table: TableSettings, folder: str) -> list[str]:
        """Keys of the files directly in a partition folder (not in deeper partitions)."""
        keys: list[str] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder + "/", Delimiter="/"
        )
        with aws_errors(f"{table.datalake_table_name}: S3 ListObjectsV2 of {folder}/"):
            for page in pages:
                keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def _storage_descriptor(self, table: TableSettings) -> dict[str, Any]:
        """The raw table's StorageDescriptor as Glue has it (partitions copy it)."""
        try:
            with self._glue_errors(table, "GetTable"):
                found = self.glue.get_table(
                    DatabaseName=self.settings.database, Name=table.datalake_table_name
                )
        except AwsError as exc:
            raise self._missing_table(table, exc) from exc
        storage = found["Table"].get("StorageDescriptor", {})
        return {k: v for k, v in storage.items() if k in STORAGE_KEYS}

    def _missing_table(self, table: TableSettings, exc: AwsError) -> DatalakeError:
        """A clear message when Glue says the raw table is not there; else ``exc`` itself."""
        if exc.code != "EntityNotFoundException":
            return exc
        return DatalakeError(
            f"{table.name}: raw table {table.datalake_table_name} does not exist in "
            f"database {self.settings.database}; run create-datalake-tables first"
        )

    def _folder_url(self, table: TableSettings, values: PartitionValues) -> str:
        return f"s3://{self.bucket}/{partition_folder(table, self.settings, values)}/"

    def _glue_errors(self, table: TableSettings, operation: str) -> AbstractContextManager[None]:
        return aws_errors(f"{table.datalake_table_name}: glue {operation}")

    def _raise_batch_errors(
        self, table: TableSettings, operation: str, response: dict[str, Any], benign: str
    ) -> None:
        """Raise for the first error entry of a batch response, except the ``benign`` code."""
        for entry in response.get("Errors") or []:
            detail = entry.get("ErrorDetail") or {}
            if detail.get("ErrorCode") == benign:
                continue
            raise DatalakeError(
                f"{table.datalake_table_name}: glue {operation} of partition "
                f"{tuple(entry.get('PartitionValues') or ())}: "
                f"{detail.get('ErrorCode')}: {one_line(detail.get('ErrorMessage'))}"
            )

    # Typed views (Athena)

    def create_view(self, table: TableSettings) -> None:
        self._storage_descriptor(table)  # a clear message when the raw table is missing
        raw_ref = f"{quote_name(self.settings.database)}.{quote_name(table.datalake_table_name)}"
        self._run_query(
            create_view_sql(table, self.settings, self.dialect, raw_ref=raw_ref),
            f"{table.datalake_table_view}: athena CREATE VIEW",
        )

    @property
    def view_qualifier(self) -> str | None:
        return self.settings.database

    def create_sql_view(self, name: str, athena_select: str, source: str) -> None:
        self._run_query(
            f"CREATE OR REPLACE VIEW {quote_name(name)} AS\n{athena_select}",
            f"{source}: athena CREATE VIEW {name}",
        )

    def drop_sql_view(self, name: str) -> None:
        self._run_query(f"DROP VIEW IF EXISTS {quote_name(name)}", f"{name}: athena DROP VIEW")

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` (Athena SQL) in the workgroup, wait for it, and page through its results."""
        query_id = self._run_query(sql, "query")
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        with aws_errors(f"query: GetQueryResults {query_id}"):
            pages = self.athena.get_paginator("get_query_results").paginate(
                QueryExecutionId=query_id
            )
            for page in pages:
                result = page["ResultSet"]
                if not columns:
                    info = result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                    columns = [c["Name"] for c in info]
                for row in result.get("Rows", []):
                    values = tuple(cell.get("VarCharValue") for cell in row.get("Data", []))
                    # A SELECT's first row repeats the column names.
                    if not rows and list(values) == columns:
                        continue
                    rows.append(values)
        return columns, rows

    def _run_query(self, sql: str, what: str) -> str:
        """Run one Athena statement and wait for it; failures carry Athena's reason and the SQL.

        Returns the query's execution id."""
        request: dict[str, Any] = {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": self.settings.database},
            "WorkGroup": self.settings.workgroup,
        }
        if self.settings.athena_output_location:
            request["ResultConfiguration"] = {
                "OutputLocation": self.settings.athena_output_location
            }
        with aws_errors(f"{what}: StartQueryExecution"):
            query_id = self.athena.start_query_execution(**request)["QueryExecutionId"]
        deadline = time.monotonic() + self.query_timeout
        delay = POLL_FIRST
        while True:
            with aws_errors(f"{what}: GetQueryExecution {query_id}"):
                status = self.athena.get_query_execution(QueryExecutionId=query_id)[
                    "QueryExecution"
                ]["Status"]
            state = status.get("State")
            if state == "SUCCEEDED":
                return str(query_id)
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason") or (status.get("AthenaError") or {}).get(
                    "ErrorMessage", "no reason given"
                )
                raise DatalakeError(
                    f"{what}: query {query_id} {state}: {one_line(reason)}; statement: "
                    f"{one_line(sql)}"
                )
            if time.monotonic() + delay > deadline:
                with aws_errors(f"{what}: StopQueryExecution {query_id}"):
                    self.athena.stop_query_execution(QueryExecutionId=query_id)
                raise DatalakeError(
                    f"{what}: query {query_id} still {state} after {self.query_timeout:.0f} s; "
                    f"stopped. Statement: {one_line(sql)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = []
        for client in (self.s3, self.glue, self.athena):
            client.close()
