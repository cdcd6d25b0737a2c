"""Small settings objects for tests that need neither a settings file nor a database."""

from __future__ import annotations

import dataclasses
from typing import Any

from panorama_elt.column_types import parse_column_type
from panorama_elt.settings import (
    BasePartition,
    DatalakeSettings,
    FieldSettings,
    PartitionSettings,
    TableSettings,
)

LMS = "lms.example.com"


def studentmodule(course_field: str = "course_id", state_field: str = "state") -> TableSettings:
    """courseware_studentmodule reduced to four columns, partitioned by course."""
    fields = tuple(
        FieldSettings(n, parse_column_type(t))
        for n, t in [
            ("id", "bigint(20)"),
            (course_field, "varchar(255)"),
            (state_field, "longtext"),
            ("modified", "datetime(6)"),
        ]
    )
    return TableSettings(
        "courseware_studentmodule",
        "db",
        "openedx_raw_courseware_studentmodule",
        "openedx_table_courseware_studentmodule",
        fields,
        PartitionSettings((course_field,)),
    )


def datalake_settings(**changes: Any) -> DatalakeSettings:
    """A datalake with prefix `openedx` and one base partition `lms`; override any field."""
    base = DatalakeSettings(
        type="local",
        base_prefix="openedx",
        database="panorama",
        workgroup="primary",
        base_partitions=(BasePartition("lms", parse_column_type("varchar"), LMS),),
    )
    return dataclasses.replace(base, **changes)
