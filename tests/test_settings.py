"""Settings: the shipped template and the original tool's files load; bad settings get one clear line."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from panorama_elt.errors import SettingsError
from panorama_elt.settings import load_settings, parse_settings
from tests.conftest import ROOT, TEMPLATE

REFERENCE = ROOT.parent / "shared" / "reference"


def test_template_loads_with_every_openedx_table() -> None:
    settings = load_settings(TEMPLATE)
    names = {t.name for t in settings.tables}
    assert {
        "course_structures",
        "student_anonymoususerid",
        "site_configuration_siteconfiguration",
        "auth_user",
        "student_courseenrollment",
        "auth_userprofile",
        "student_courseaccessrole",
        "course_overviews_courseoverview",
        "courseware_studentmodule",
        "grades_persistentcoursegrade",
        "student_manualenrollmentaudit",
        "student_courseenrollmentallowed",
        "certificates_generatedcertificate",
        "course_groups_cohortmembership",
    } <= names
    sm = next(t for t in settings.tables if t.name == "courseware_studentmodule")
    assert sm.partition_fields == ("course_id",) and sm.incremental
    assert str(sm.partitions.interval) == "2 HOUR"
    assert sm.datalake_table_name == "openedx_raw_courseware_studentmodule"
    assert sm.datalake_table_view == "openedx_table_courseware_studentmodule"
    assert settings.datalake.path == (TEMPLATE.parent / "datalake").resolve()


@pytest.mark.skipif(not REFERENCE.exists(), reason="needs ../shared/reference beside the clone")
def test_original_openedx_settings_load_unchanged() -> None:
    settings = load_settings(REFERENCE / "panorama_openedx_settings_example.yaml")
    assert settings.datalake.type == "aws" and settings.datalake.bucket == "panorama"
    mysql = settings.datasource("openedx_mysql").mysql
    assert mysql is not None and mysql.username is None and mysql.host == "localhost"
    lowest = next(t for t in settings.tables if t.name == "course_overviews_courseoverview").field(
        "lowest_passing_grade"
    )
    assert lowest.type.view_type == "DOUBLE"


def base() -> dict[str, Any]:
    return {
        "datalake": {
            "type": "local",
            "path": "lake",
            "base_prefix": "openedx",
            "base_partitions": [{"name": "lms", "type": "varchar", "value": "lms.example.com"}],
        },
        "datasources": [
            {
                "type": "mysql",
                "name": "db",
                "mysql_host": "h",
                "mysql_username": "u",
                "mysql_password": "p",
                "mysql_database": "d",
                "tables": [
                    {
                        "name": "t",
                        "fields": [
                            {"name": "id", "type": "int"},
                            {"name": "course_id", "type": "varchar(255)"},
                            {"name": "modified", "type": "datetime(6)"},
                        ],
                        "partitions": {
                            "partition_fields": ["course_id"],
                            "timestamp_field": "modified",
                            "interval": "2 hour",
                        },
                    },
                    {"name": "u", "fields": [{"name": "id", "type": "int"}]},
                ],
            },
        ],
    }


def edit(path: str, value: Any, delete: bool = False) -> dict[str, Any]:
    """The base settings with the value at a dotted path (list indexes as [n]) replaced."""
    data = copy.deepcopy(base())
    keys = [
        int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")
    ]
    target = data
    for k in keys[:-1]:
        target = target[k]
    if delete:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


T0 = "datasources[0].tables[0]"


def two_sources_same_table() -> dict[str, Any]:
    data = copy.deepcopy(base())
    second = copy.deepcopy(data["datasources"][0])
    second["name"] = "db2"
    second["tables"] = [
        {
            "name": "u",
            "datalake_table_name": "other_raw_u",
            "datalake_table_view": "other_u",
            "fields": [{"name": "id", "type": "int"}],
        }
    ]
    data["datasources"].append(second)
    return data


CASES = [
    (
        edit("datalake.type", "gcs"),
        "datalake.type: unknown datalake type 'gcs' (valid: local, aws)",
    ),
    (edit("datalake.type", "aws"), "datalake.panorama_raw_data_bucket: is required"),
    (edit("datalake.colour", "blue"), "datalake.colour: unknown key"),
    (
        edit("datalake.base_prefix", "my-app"),
        "datalake.base_prefix: 'my-app' is not a plain identifier",
    ),
    (edit("datalake.base_partitions", {"lms": "x"}), "datalake.base_partitions: must be a list"),
    (
        edit("datalake.base_partitions[0].value", None),
        "datalake.base_partitions[0].value: is required",
    ),
    (edit("datalake.compression", "zip"), "datalake.compression: must be gzip or none"),
    (edit("datalake", None, delete=True), "datalake: is required"),
    (edit("datasources", []), "datasources: must be a non-empty list"),
    (
        edit("datasources[0].type", "csv"),
        "datasources[0].type: unknown datasource type 'csv' (valid: mysql, openedx_course_structures, edfi_api)",
    ),
    (edit("datasources[0].type", None, delete=True), "datasources[0].type: is required"),
    (
        edit("datasources[0].mysql_pasword", "x"),
        "datasources[0].mysql_pasword: unknown key (did you mean 'mysql_password'?)",
    ),
    (
        edit("datasources[0].mysql_port", "abc"),
        "datasources[0].mysql_port: must be a whole number, got 'abc'",
    ),
    (
        edit("datasources[0].mysql_port", 70000),
        "datasources[0].mysql_port: must be between 1 and 65535",
    ),
    (
        edit("datasources[0].tables", {"name": "t"}),
        "datasources[0].tables: must be a list of tables",
    ),
    (edit(f"{T0}.name", "my table"), f"{T0}.name: 'my table' is not a plain identifier"),
    (edit(f"{T0}.name", None, delete=True), f"{T0}.name: is required"),
    (
        edit("datasources[0].tables[1].name", "t"),
        "datasources[0].tables[1].name: duplicate table name 't'",
    ),
    (edit(f"{T0}.fields[0].type", "strng"), f"{T0}.fields[0].type: unknown type 'strng'"),
    (
        edit(f"{T0}.fields[0].name", "id;drop"),
        f"{T0}.fields[0].name: 'id;drop' is not a plain identifier",
    ),
    (edit(f"{T0}.fields[1].name", "ID"), f"{T0}.fields[1].name: duplicate field name 'ID'"),
    (
        edit(f"{T0}.partitions.partition_fields", ["nope"]),
        f"{T0}.partitions.partition_fields[0]: 'nope' is not one of the table's fields",
    ),
    (
        edit(f"{T0}.partitions.timestamp_field", "nope"),
        f"{T0}.partitions.timestamp_field: 'nope' is not one of the table's fields",
    ),
    (
        edit(f"{T0}.partitions.interval", "2 hours"),
        f"{T0}.partitions.interval: '2 hours' is not an interval",
    ),
    (
        edit(f"{T0}.partitions.interval", "two hour"),
        f"{T0}.partitions.interval: 'two hour' is not an interval",
    ),
    (
        edit(f"{T0}.partitions.interval", "2 HOUR; DROP TABLE x"),
        f"{T0}.partitions.interval: '2 HOUR; DROP TABLE x' is not an interval",
    ),
    (
        edit(f"{T0}.partitions.interval", None, delete=True),
        f"{T0}.partitions.interval: is required when timestamp_field is set",
    ),
    (edit(f"{T0}.partitions.every", "1"), f"{T0}.partitions.every: unknown key"),
    (
        edit(f"{T0}.datalake_table_name", "openedx_raw_u"),
        "datalake name 'openedx_raw_u' is also used by",
    ),
    (
        two_sources_same_table(),
        "datasources[1].tables[0].name: table 'u' is also in datasources[0].tables[1]; "
        "its files would share one folder",
    ),
    (
        edit("datasources[0].mysql_password", "${PANORAMA_TEST_SURELY_UNSET}"),
        "datasources[0].mysql_password: environment variable PANORAMA_TEST_SURELY_UNSET is not set",
    ),
]


@pytest.mark.parametrize("data, message", CASES, ids=[c[1][:60] for c in CASES])
def test_bad_settings_get_one_clear_message(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings(data, Path("s.yaml"))
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    data = edit("datalake.type", "gcs")
    data["datasources"][0]["tables"][0]["fields"][0]["type"] = "strng"
    with pytest.raises(SettingsError) as info:
        parse_settings(data, Path("s.yaml"))
    assert len(info.value.problems) == 2


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANORAMA_TEST_PW", "s3cr3t")
    data = edit("datasources[0].mysql_password", "${PANORAMA_TEST_PW}")
    assert parse_settings(data, Path("s.yaml")).datasources[0].mysql.password == "s3cr3t"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the settings file is empty"),
        ("datalake: [\n", "YAML syntax error at line"),
        ("- a\n- b\n", "must be a mapping"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_passwords_are_not_in_repr() -> None:
    settings = parse_settings(base(), Path("s.yaml"))
    assert "'p'" not in repr(settings.datasources[0].mysql)
    yaml.safe_dump(base())  # the base document itself stays plain YAML
