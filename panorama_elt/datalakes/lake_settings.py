"""Settings blocks of the datalake plugins: each type's own keys, read into DatalakeSettings fields.

Imports neither boto3 nor duckdb. Each parse function returns the DatalakeSettings fields its
type sets; the keys every datalake shares (type, base_prefix, datalake_database,
base_partitions, compression) are read by ``settings.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from panorama_elt.plugins import SettingsBlock
from panorama_elt.settings_check import Checker


def parse_local(check: Checker, d: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A folder of files and a DuckDB catalog file (default: in that folder)."""
    return {
        "path": check.local_path(check.text(d, "path", path) or "datalake"),
        "database_file": check.local_path(check.text(d, "database_file", path)),
    }


def parse_aws(check: Checker, d: Mapping[str, Any], path: str) -> dict[str, Any]:
    """An S3 bucket, Glue and Athena; keys optional (else the AWS credential chain)."""
    return {
        "bucket": check.text(d, "panorama_raw_data_bucket", path, required=True),
        "aws_access_key": check.text(d, "aws_access_key", path),
        "aws_secret_access_key": check.text(d, "aws_secret_access_key", path),
        "aws_region": check.text(d, "aws_region", path),
        "aws_profile": check.text(d, "aws_profile", path),
        "endpoint_url": check.text(d, "endpoint_url", path),
        "athena_output_location": check.text(d, "athena_output_location", path),
        "workgroup": check.text(d, "datalake_workgroup", path) or "primary",
        "aws_max_attempts": check.integer(d, "aws_max_attempts", path, 10, 1, 100),
    }


LOCAL = SettingsBlock(("path", "database_file"), parse_local)
AWS = SettingsBlock(
    (
        "panorama_raw_data_bucket",
        "aws_access_key",
        "aws_secret_access_key",
        "aws_region",
        "aws_profile",
        "endpoint_url",
        "athena_output_location",
        "datalake_workgroup",
        "aws_max_attempts",
    ),
    parse_aws,
)
