"""Settings: the shipped template and the original tool's files load; bad settings get one clear line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from panorama_elt.datasources.source_settings import CsvSettings
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


@pytest.mark.skipif(not REFERENCE.exists(), reason="needs ../shared/reference beside the clone")
def test_original_csv_settings_load_unchanged() -> None:
    settings = load_settings(REFERENCE / "panorama_csv_settings_example.yaml")
    [source] = settings.datasources
    csv = source.block(CsvSettings)
    assert source.type == "csv" and csv is not None
    assert csv.location == REFERENCE / "file.csv"
    assert [t.datalake_table_name for t in settings.tables] == ["my_app_raw_my_table"]


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


def with_keys(**keys: Any) -> dict[str, Any]:
    """The base settings with ``keys`` added to the mysql datasource."""
    data = copy.deepcopy(base())
    data["datasources"][0].update(keys)
    return data


def aws_datalake(**extra: Any) -> dict[str, Any]:
    """The base settings with an aws datalake (bucket set) plus ``extra`` keys."""
    data = copy.deepcopy(base())
    lake = data["datalake"]
    del lake["path"]
    lake.update(type="aws", panorama_raw_data_bucket="b", **extra)
    return data


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
        aws_datalake(path="lake"),
        "datalake.path: datalakes of type 'aws' do not read it (only type local)",
    ),
    (
        edit("datalake.aws_secret_access_key", "x"),
        "datalake.aws_secret_access_key: datalakes of type 'local' do not read it (only type aws)",
    ),
    (
        edit("datalake.datalake_workgroup", "primary"),
        "datalake.datalake_workgroup: datalakes of type 'local' do not read it (only type aws)",
    ),
    (
        aws_datalake(aws_regoin="us-east-1"),
        "datalake.aws_regoin: unknown key (did you mean 'aws_region'?)",
    ),
    (
        edit("datalake.databse_file", "x.duckdb"),
        "datalake.databse_file: unknown key (did you mean 'database_file'?)",
    ),
    (
        aws_datalake(aws_max_attempts=0),
        "datalake.aws_max_attempts: must be between 1 and 100, got 0",
    ),
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
        edit("datasources[0].type", "parquet"),
        "datasources[0].type: unknown datasource type 'parquet' (valid: mysql, openedx_course_structures, csv, xls, edfi_api)",
    ),
    (edit("datasources[0].type", None, delete=True), "datasources[0].type: is required"),
    (
        edit("datasources[0].mongodb_host", "m"),
        "datasources[0].mongodb_host: datasources of type 'mysql' do not read it "
        "(only type openedx_course_structures)",
    ),
    (
        edit("datasources[0].mysql_ssl", "maybe"),
        "datasources[0].mysql_ssl: must be true or false, got 'maybe'",
    ),
    (
        edit("datasources[0].mysql_ssl_ca", "/nonexistent/ca.pem"),
        "datasources[0].mysql_ssl_ca: file /nonexistent/ca.pem not found",
    ),
    (
        with_keys(mysql_ssl=False, mysql_ssl_verify_cert=True),
        "datasources[0].mysql_ssl: is false (no TLS) but mysql_ssl_verify_cert set",
    ),
    (
        with_keys(mysql_ssl=True, mysql_ssl_verify_cert=False, mysql_ssl_verify_identity=True),
        "datasources[0].mysql_ssl_verify_identity: needs mysql_ssl_verify_cert",
    ),
    (
        edit("datasources[0].mysql_ssl_cert", str(TEMPLATE)),
        "datasources[0].mysql_ssl_key: is required with mysql_ssl_key and mysql_ssl_cert",
    ),
    (
        edit("datasources[0].mongodb_tls_ca_file", "ca.pem"),
        "datasources[0].mongodb_tls_ca_file: datasources of type 'mysql' do not read it",
    ),
    (
        edit("datasources[0].mysql_time_zone", "+00:00; SET x=1"),
        "datasources[0].mysql_time_zone: '+00:00; SET x=1' is not a time zone",
    ),
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


def test_each_datalake_type_reads_its_own_keys() -> None:
    lake = parse_settings(
        aws_datalake(aws_region="eu-west-1", datalake_workgroup="wg"), Path("s.yaml")
    ).datalake
    assert (lake.type, lake.bucket, lake.aws_region, lake.workgroup, lake.path) == (
        "aws",
        "b",
        "eu-west-1",
        "wg",
        None,
    )
    local = parse_settings(edit("datalake.database_file", "cat.duckdb"), Path("/x/s.yaml"))
    assert local.datalake.database_file == Path("/x/cat.duckdb")
    assert local.datalake.bucket is None


def test_each_datasource_gets_the_typed_settings_of_its_type() -> None:
    data = copy.deepcopy(base())
    data["datasources"].append(
        {
            "type": "openedx_course_structures",
            "name": "cs",
            "mongodb_host": "mongo",
            "mongodb_password": "mpw",
            "tables": [],
        }
    )
    mysql_source, structures = parse_settings(data, Path("s.yaml")).datasources
    assert mysql_source.mysql is not None and mysql_source.mysql.host == "h"
    assert mysql_source.mongodb is None
    # No mysql_host nor mysql_username: course structures read MongoDB's active versions.
    assert structures.mysql is None
    assert structures.mongodb is not None and structures.mongodb.host == "mongo"


def test_every_registered_plugin_is_a_real_class_of_its_kind() -> None:
    from panorama_elt.datalakes import REGISTRY as DATALAKES
    from panorama_elt.datalakes.base import Datalake
    from panorama_elt.datasources import REGISTRY as DATASOURCES
    from panorama_elt.datasources.base import Datasource

    for registry, base_class in ((DATASOURCES, Datasource), (DATALAKES, Datalake)):
        for name, plugin in registry.items():
            assert issubclass(plugin.load(), base_class), name


def test_validating_settings_imports_no_driver() -> None:
    """Declaring each plugin's keys must not load pymysql, pymongo, boto3 or duckdb."""
    code = (
        "import sys; from panorama_elt.settings import load_settings; "
        f"load_settings({str(TEMPLATE)!r}); "
        "print(sorted(m for m in ('pymysql', 'pymongo', 'boto3', 'botocore', 'duckdb') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_secrets_of_every_settings_block_are_masked() -> None:
    from panorama_elt.secrets import MASK, SecretFilter

    data = copy.deepcopy(base())
    data["datasources"].append(
        {
            "type": "openedx_course_structures",
            "name": "cs",
            "mongodb_password": "mongo-pw-1",
            "mongodb_uri": "mongodb://u:uri-pw-2@m/x",
            "mysql_host": "h",
            "mysql_password": "course-index-pw-3",
            "tables": [],
        }
    )
    lake = aws_datalake(aws_access_key="AKIAEXAMPLE4", aws_secret_access_key="lake-secret-5")
    data["datalake"] = lake["datalake"]
    secret_filter = SecretFilter()
    secret_filter.add_from_settings(parse_settings(data, Path("s.yaml")))
    line = "mongo-pw-1 course-index-pw-3 AKIAEXAMPLE4 lake-secret-5 mysql p4ss"
    assert secret_filter.scrub(line) == f"{MASK} {MASK} {MASK} {MASK} mysql p4ss"


def test_mysql_tls_defaults_verify_what_can_be_verified(tmp_path: Path) -> None:
    from panorama_elt.datasources.source_settings import MySQLTLS

    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client-key.pem"))
    for file in (ca, cert, key):
        file.write_text("PEM")
    files = {"ca": "ca.pem", "cert": "client.pem", "key": "client-key.pem"}
    table = [
        ({}, None),  # PyMySQL's preferred mode: TLS if offered, nothing verified
        ({"mysql_ssl": False}, MySQLTLS(required=False)),
        ({"mysql_ssl": True}, MySQLTLS(True, None, None, None, True, True)),
        ({"mysql_ssl_ca": "ca"}, MySQLTLS(True, ca, None, None, True, True)),
        (
            {"mysql_ssl_ca": "ca", "mysql_ssl_verify_identity": False},
            MySQLTLS(True, ca, None, None, True, False),
        ),
        (
            {"mysql_ssl": True, "mysql_ssl_verify_cert": False},
            MySQLTLS(True, None, None, None, False, False),
        ),
        (
            {"mysql_ssl_cert": "cert", "mysql_ssl_key": "key"},
            MySQLTLS(True, None, cert, key, False, False),
        ),
    ]
    for keys, expected in table:
        values = {
            k: files[v] if k.startswith("mysql_ssl_") and k[10:] in files else v
            for k, v in keys.items()
        }
        settings = parse_settings(with_keys(**values), tmp_path / "s.yaml")
        mysql = settings.datasources[0].mysql
        assert mysql is not None and mysql.tls == expected, keys


def test_a_mongodb_ca_file_turns_tls_on(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("PEM")
    data = copy.deepcopy(base())
    data["datasources"] = [
        {
            "type": "openedx_course_structures",
            "name": "cs",
            "mongodb_tls_ca_file": "ca.pem",
            "mongodb_auth_source": "admin",
            "tables": [],
        }
    ]
    mongo = parse_settings(data, tmp_path / "s.yaml").datasources[0].mongodb
    assert mongo is not None
    assert (mongo.tls, mongo.tls_ca_file, mongo.tls_allow_invalid_hostnames) == (
        True,
        tmp_path / "ca.pem",
        False,
    )
    data["datasources"][0]["mongodb_tls"] = False
    with pytest.raises(SettingsError, match="mongodb_tls: is false but mongodb_tls_ca_file is set"):
        parse_settings(data, tmp_path / "s.yaml")
