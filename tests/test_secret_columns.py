"""Credential-looking columns: one warning per run and column; still loaded; the template's are NULL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from panorama_elt.cli import main
from panorama_elt.secret_columns import secret_columns
from panorama_elt.settings import load_settings
from tests.conftest import TEMPLATE, connect, local_datalake, mysql_source, write_settings


@pytest.mark.mariadb
def test_each_secret_column_read_gets_one_warning_and_still_loads(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, username varchar(20), "
            "password varchar(128), api_secret varchar(40), Refresh_Token varchar(40), "
            "signing_key varchar(40), keyboard varchar(10))"
        )
        cur.execute(
            "INSERT INTO accounts VALUES (1, 'ada', 'pbkdf2_sha256$x', 's', 't', 'k', 'qwerty')"
        )
    fields = [
        {"name": "id", "type": "int(11)"},
        {"name": "username", "type": "varchar(20)"},
        {"name": "password", "type": "varchar(128)"},
        {"name": "api_secret", "type": "varchar(40)"},
        {"name": "Refresh_Token", "type": "varchar(40)"},
        {"name": "signing_key", "type": "varchar(40)", "value": None},  # not read: no warning
        {"name": "keyboard", "type": "varchar(10)"},
    ]
    source = mysql_source(mysql_server, scratch_db, [{"name": "accounts", "fields": fields}])
    path = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    runner = CliRunner()
    for command in ("create-datalake-tables", "create-datalake-views"):
        assert runner.invoke(main, ["--settings", str(path), command, "--all"]).exit_code == 0
    result = runner.invoke(main, ["--settings", str(path), "extract-and-load", "--all"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "looks like a password" in line]
    assert len(warnings) == 3, warnings
    for column, index in (("password", 2), ("api_secret", 3), ("Refresh_Token", 4)):
        (line,) = [w for w in warnings if f"accounts.{column}:" in w]
        assert line.endswith(f"(datasources[0].tables[0].fields[{index}])")
    db = duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True)
    try:
        row = db.execute(
            "SELECT password, api_secret, signing_key FROM openedx_table_accounts"
        ).fetchone()
    finally:
        db.close()
    assert row == ("pbkdf2_sha256$x", "s", None)  # loaded as before; the constant is NULL


def test_the_template_writes_password_hashes_as_null() -> None:
    settings = load_settings(TEMPLATE)
    auth_user = next(t for t in settings.tables if t.name == "auth_user")
    password = auth_user.field("password")
    assert password.constant and password.value is None
    assert secret_columns(settings.tables) == []  # the template reads no credential column
