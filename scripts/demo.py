"""The demo: load a synthetic Open edX database into a local datalake and query its typed views."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pymysql
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from panorama_elt.synthetic.openedx_mysql import create_schema, generate  # noqa: E402

DEMO = ROOT / "build" / "demo"
DATABASE = "openedx_demo"


def server() -> dict[str, str]:
    env = ROOT / "build" / "mariadb" / "env"
    return dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)


def load_dataset(env: dict[str, str]) -> None:
    conn = pymysql.connect(
        host=env["PANORAMA_MYSQL_HOST"],
        port=int(env["PANORAMA_MYSQL_PORT"]),
        user=env["PANORAMA_MYSQL_USER"],
        password=env["PANORAMA_MYSQL_PASSWORD"],
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4")
        cur.execute(f"USE {DATABASE}")
    create_schema(conn)
    generate(conn, users=3000, courses=25, studentmodule_rows=60000, seed=42)
    conn.close()


def write_settings(env: dict[str, str]) -> Path:
    """The shipped template, pointed at the private MariaDB and a local datalake."""
    data = yaml.safe_load((ROOT / "panorama_settings.yaml.template").read_text())
    data["datalake"]["path"] = str(DEMO / "datalake")
    # There is no MongoDB here: the demo runs the MySQL datasource only.
    data["datasources"] = [ds for ds in data["datasources"] if ds["type"] == "mysql"]
    for ds in data["datasources"]:
        ds.update(
            mysql_host=env["PANORAMA_MYSQL_HOST"],
            mysql_port=int(env["PANORAMA_MYSQL_PORT"]),
            mysql_username=env["PANORAMA_MYSQL_USER"],
            mysql_password="${PANORAMA_DEMO_MYSQL_PASSWORD}",
            mysql_database=DATABASE,
        )
    path = DEMO / "panorama_settings.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def panorama(settings: Path, *args: str, password: str) -> None:
    command = [sys.executable, str(ROOT / "panorama.py"), "--settings", str(settings), *args]
    print(f"\n$ panorama.py --settings {settings.relative_to(ROOT)} {' '.join(args)}", flush=True)
    env = {**os.environ, "PANORAMA_DEMO_MYSQL_PASSWORD": password}
    subprocess.run(command, check=True, env=env)


REPORT = """
SELECT o.id AS course,
       count(DISTINCT e.user_id) FILTER (WHERE e.is_active = 1) AS enrollments,
       count(DISTINCT m.student_id) FILTER (WHERE m.modified >= now()::TIMESTAMP - INTERVAL 30 DAY) AS active_30d,
       round(avg(g.percent_grade), 3) AS avg_grade
FROM openedx_table_course_overviews_courseoverview o
LEFT JOIN openedx_table_student_courseenrollment e ON e.course_id = o.id AND e.lms = o.lms
LEFT JOIN openedx_table_courseware_studentmodule m ON m.course_id = o.id AND m.lms = o.lms
LEFT JOIN openedx_table_grades_persistentcoursegrade g ON g.course_id = o.id AND g.lms = o.lms AND g.user_id = e.user_id
GROUP BY o.id
ORDER BY enrollments DESC
LIMIT 12
"""


def main() -> None:
    env = server()
    DEMO.mkdir(parents=True, exist_ok=True)
    print(f"Generating the synthetic Open edX database {DATABASE}...", flush=True)
    load_dataset(env)
    settings = write_settings(env)
    password = env["PANORAMA_MYSQL_PASSWORD"]
    panorama(settings, "test-connections", password=password)
    panorama(settings, "create-datalake-tables", "--all", password=password)
    panorama(settings, "create-datalake-views", "--all", password=password)
    panorama(settings, "extract-and-load", "--all", "--force", password=password)
    panorama(settings, "extract-and-load", "--all", password=password)
    database = DEMO / "datalake" / "panorama.duckdb"
    db = duckdb.connect(str(database), read_only=True)
    print("\nReport from the typed views (top courses by active enrollments):\n")
    result = db.execute(REPORT)
    names = [d[0] for d in result.description]
    rows = result.fetchall()
    widths = [max(len(str(x)) for x in [n, *(r[i] for r in rows)]) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    print(
        f"\nQuery it yourself: duckdb {database.relative_to(ROOT)}  (or duckdb.connect() in Python)"
    )


if __name__ == "__main__":
    main()
