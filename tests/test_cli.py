"""The command line: commands, selection rules, exit codes, set-tables, test-connections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from panorama_elt.cli import main
from tests.conftest import connect, local_datalake, mysql_source, write_settings

COMMANDS = [
    "extract-and-load",
    "create-datalake-tables",
    "create-datalake-views",
    "create-table-views",
    "drop-datalake-tables",
    "set-tables",
    "set-tables-fields",
    "test-connections",
]


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "choose the tables with --all"),
        (["--all", "--tables", "t"], "--all cannot be combined"),
        (["--all", "--datasource", "db"], "--all cannot be combined"),
        (["--tables", " , "], "--tables needs at least one table name"),
    ],
)
def test_selection_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run("extract-and-load", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_missing_settings_file_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run("--settings", str(tmp_path / "nope.yaml"), "extract-and-load", "--all")
    assert result.exit_code == 2
    assert "not found" in result.output
    assert "Traceback" not in result.output


def small_settings(tmp_path: Path, server: dict[str, Any], database: str, **source: Any) -> Path:
    ds = mysql_source(server, database, [{"name": "t", "fields": [{"name": "id", "type": "int"}]}])
    ds.update(source)
    return write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [ds])


def test_unknown_table_name_exit_2(tmp_path: Path, mysql_server: dict[str, Any]) -> None:
    settings = small_settings(tmp_path, mysql_server, "edxapp")
    result = run("--settings", str(settings), "extract-and-load", "--tables", "t,nope")
    assert result.exit_code == 2
    assert "--tables: nope not found" in result.output


def test_test_connections_ok(tmp_path: Path, mysql_server: dict[str, Any]) -> None:
    result = run(
        "--settings", str(small_settings(tmp_path, mysql_server, "edxapp")), "test-connections"
    )
    assert result.exit_code == 0, result.output
    assert "OK      datasource db: MySQL" in result.output
    assert "OK      datalake catalog: DuckDB" in result.output


def test_wrong_password_fails_without_showing_it(
    tmp_path: Path, mysql_server: dict[str, Any]
) -> None:
    settings = small_settings(tmp_path, mysql_server, "edxapp", mysql_password="Wr0ng-Secret!")
    result = run("--debug", "--settings", str(settings), "test-connections")
    assert result.exit_code == 1
    assert "access denied for user 'panorama'" in result.output
    assert "Wr0ng-Secret!" not in result.output


def test_unreachable_database_is_one_line(tmp_path: Path, mysql_server: dict[str, Any]) -> None:
    settings = small_settings(tmp_path, mysql_server, "edxapp", mysql_port=1)
    result = run("--settings", str(settings), "test-connections")
    assert result.exit_code == 1
    assert (
        "FAILED  datasource db: datasource db (mysql://127.0.0.1:1/edxapp): cannot connect"
        in result.output
    )


def test_set_tables_and_fields_from_information_schema(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE posts (id bigint unsigned primary key, `key` varchar(20), body longtext, at datetime(6), price decimal(8,2))"
        )
        cur.execute("CREATE TABLE tags (id int primary key, name varchar(40))")
    source = mysql_source(mysql_server, scratch_db, [])
    del source["tables"]
    settings = write_settings(
        tmp_path / "s.yaml", local_datalake(tmp_path / "lake", base_prefix="wordpress"), [source]
    )
    result = run("--settings", str(settings), "set-tables", "-t", "posts,tags")
    assert result.exit_code == 0, result.output
    result = run("--settings", str(settings), "set-tables-fields", "--all")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(settings.read_text())
    assert data["datalake"]["base_prefix"] == "wordpress"
    tables = data["datasources"][0]["tables"]
    assert tables[0] == {
        "name": "posts",
        "fields": [
            {"name": "id", "type": "bigint(20) unsigned"},
            {"name": "key", "type": "varchar(20)"},
            {"name": "body", "type": "longtext"},
            {"name": "at", "type": "datetime(6)"},
            {"name": "price", "type": "decimal(8,2)"},
        ],
    }
    assert [f["name"] for f in tables[1]["fields"]] == ["id", "name"]
    assert (tmp_path / "s.yaml.bak").exists()


def test_settings_rewrite_keeps_the_file_private(
    tmp_path: Path, mysql_server: dict[str, Any]
) -> None:
    settings = small_settings(tmp_path, mysql_server, "edxapp")
    settings.chmod(0o600)
    assert run("--settings", str(settings), "set-tables", "-t", "a,b").exit_code == 0
    assert settings.stat().st_mode & 0o777 == 0o600


def test_results_file_in_a_missing_folder_is_a_usage_error(
    tmp_path: Path, mysql_server: dict[str, Any]
) -> None:
    settings = small_settings(tmp_path, mysql_server, "edxapp")
    missing = str(tmp_path / "no" / "r.json")
    result = run(
        "--settings", str(settings), "extract-and-load", "--all", "--results-file", missing
    )
    assert result.exit_code == 2
    assert "--results-file: folder" in result.output and "does not exist" in result.output
    assert not (tmp_path / "lake").exists()


def test_set_tables_fields_reports_missing_table(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    source = mysql_source(mysql_server, scratch_db, [{"name": "ghost"}])
    settings = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    result = run("--settings", str(settings), "set-tables-fields", "--all")
    assert result.exit_code == 1
    assert "not found in the source: db.ghost" in result.output


def test_set_tables_keeps_comments_and_env_values(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id int primary key, price decimal(8,2))")
    monkeypatch.setenv("PANORAMA_TEST_PW", mysql_server["password"])
    settings = tmp_path / "s.yaml"
    settings.write_text(
        f"""# My installation: keep this comment
datalake:
  type: local
  path: ./lake   # beside this file
  base_prefix: shop
datasources:
- type: mysql
  name: shop_db
  mysql_host: {mysql_server["host"]}
  mysql_port: {mysql_server["port"]}
  mysql_username: {mysql_server["user"]}
  mysql_password: ${{PANORAMA_TEST_PW}}   # from the environment
  mysql_database: {scratch_db}
"""
    )
    assert run("--settings", str(settings), "set-tables", "-t", "items").exit_code == 0
    result = run("--settings", str(settings), "set-tables-fields", "--all")
    assert result.exit_code == 0, result.output
    text = settings.read_text()
    assert "# My installation: keep this comment" in text
    assert "path: ./lake   # beside this file" in text
    assert "mysql_password: ${PANORAMA_TEST_PW}   # from the environment" in text
    assert (
        "- {name: price, type: decimal(8,2)}" in text
        or "- {name: price, type: 'decimal(8,2)'}" in text
    )
    data = yaml.safe_load(text)
    assert data["datasources"][0]["tables"] == [
        {
            "name": "items",
            "fields": [
                {"name": "id", "type": "int(11)"},
                {"name": "price", "type": "decimal(8,2)"},
            ],
        }
    ]
