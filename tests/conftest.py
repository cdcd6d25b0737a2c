"""Fixtures: the project's private MariaDB, a seeded Open edX database, settings files."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "panorama_settings.yaml.template"
# One per pytest process, so concurrent runs on the shared private server never collide.
OPENEDX_DB = f"panorama_test_openedx_{os.getpid()}"


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may ever reach a real AWS account."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture(scope="session")
def mysql_server() -> dict[str, Any]:
    """Connection parameters of the private MariaDB, started through the project's script.

    A server that cannot be started fails the tests that need it; it is never a skip.
    """
    env_file = ROOT / "build" / "mariadb" / "env"
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "mariadb.sh"), "start"], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"cannot start the private MariaDB:\n{result.stdout}\n{result.stderr}")
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return {
        "host": values["PANORAMA_MYSQL_HOST"],
        "port": int(values["PANORAMA_MYSQL_PORT"]),
        "user": values["PANORAMA_MYSQL_USER"],
        "password": values["PANORAMA_MYSQL_PASSWORD"],
    }


def connect(server: dict[str, Any], database: str | None = None, **kwargs: Any) -> Any:
    """A pymysql connection with default conversions (what a user's SELECT returns)."""
    return pymysql.connect(
        host=server["host"],
        port=server["port"],
        user=server["user"],
        password=server["password"],
        database=database,
        charset="utf8mb4",
        autocommit=True,
        **kwargs,
    )


@pytest.fixture(scope="session")
def openedx_db(mysql_server: dict[str, Any]) -> Iterator[str]:
    """A small synthetic Open edX database, created once per session."""
    from panorama_elt.synthetic.openedx_mysql import create_schema, generate

    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {OPENEDX_DB}")
        cur.execute(f"CREATE DATABASE {OPENEDX_DB} CHARACTER SET utf8mb4")
    with connect(mysql_server, OPENEDX_DB) as conn:
        create_schema(conn)
        generate(conn, users=300, courses=8, studentmodule_rows=4000, seed=7)
    yield OPENEDX_DB
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {OPENEDX_DB}")


@pytest.fixture
def scratch_db(mysql_server: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of its own for one test."""
    test = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    name = f"t{os.getpid()}_{test}"
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield name
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def mysql_source(
    server: dict[str, Any], database: str, tables: list[dict[str, Any]], name: str = "db"
) -> dict[str, Any]:
    """A mysql datasource entry for a settings document."""
    return {
        "type": "mysql",
        "name": name,
        "mysql_host": server["host"],
        "mysql_port": server["port"],
        "mysql_username": server["user"],
        "mysql_password": server["password"],
        "mysql_database": database,
        "tables": tables,
    }


def local_datalake(path: Path, lms: str = "lms.example.com", **extra: Any) -> dict[str, Any]:
    """A local datalake entry for a settings document."""
    return {
        "type": "local",
        "path": str(path),
        "base_prefix": "openedx",
        "datalake_database": "panorama",
        "base_partitions": [{"name": "lms", "type": "varchar", "value": lms}],
        **extra,
    }


def write_settings(path: Path, datalake: dict[str, Any], sources: list[dict[str, Any]]) -> Path:
    """Write a settings file and return its path."""
    path.write_text(yaml.safe_dump({"datalake": datalake, "datasources": sources}, sort_keys=False))
    return path


def template_tables() -> list[dict[str, Any]]:
    """The MySQL tables of the shipped settings template."""
    data = yaml.safe_load(TEMPLATE.read_text())
    return next(ds for ds in data["datasources"] if ds["type"] == "mysql")["tables"]
