"""The demo: a synthetic Open edX database and a CSV file into a local datalake, then queries."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

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


def load_dataset(env: dict[str, str]) -> list[tuple[str, str]]:
    """Generate the database; return its courses (id, display name)."""
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
    with conn.cursor() as cur:
        cur.execute("SELECT id, display_name FROM course_overviews_courseoverview ORDER BY id")
        courses = list(cur.fetchall())
    conn.close()
    return courses


STRUCTURE_FIELDS = (
    "module_location",
    "course_id",
    "organization",
    "course_code",
    "course_edition",
    "display_name",
)


def write_structures_csv(courses: list[tuple[str, str]]) -> Path:
    """There is no MongoDB here: the course rows of course_structures come from a CSV file made
    from the synthetic course overviews, loaded by the csv datasource."""
    path = DEMO / "course_structures.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(STRUCTURE_FIELDS)
        for course_id, name in courses:
            org, code, run = course_id.split(":", 1)[1].split("+")
            writer.writerow((course_id, course_id, org, code, run, name))
    return path


def write_settings(env: dict[str, str], structures: Path) -> Path:
    """The shipped template, pointed at the private MariaDB and a local datalake."""
    data = yaml.safe_load((ROOT / "panorama_settings.yaml.template").read_text())
    data["datalake"]["path"] = str(DEMO / "datalake")
    # There is no MongoDB here: the MySQL datasource, and course structures from a CSV file.
    data["datasources"] = [ds for ds in data["datasources"] if ds["type"] == "mysql"]
    data["datasources"].append(
        {
            "type": "csv",
            "name": "course_structures_file",
            "location": str(structures),
            "tables": {
                "name": "course_structures",
                "fields": [{"name": f, "type": "varchar"} for f in STRUCTURE_FIELDS],
            },
        }
    )
    for ds in data["datasources"][:-1]:
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
    shown = " ".join(f'"{a}"' if " " in a else a for a in args)
    print(f"\n$ panorama.py --settings {settings.relative_to(ROOT)} {shown}", flush=True)
    env = {**os.environ, "PANORAMA_DEMO_MYSQL_PASSWORD": password}
    subprocess.run(command, check=True, env=env)


REPORT = (
    "SELECT o.id AS course, count(DISTINCT e.user_id) FILTER (WHERE e.is_active = 1) AS enrollments, "
    "count(DISTINCT m.student_id) FILTER (WHERE m.modified >= now()::TIMESTAMP - INTERVAL 30 DAY) AS active_30d, "
    "round(avg(g.percent_grade), 3) AS avg_grade "
    "FROM openedx_table_course_overviews_courseoverview o "
    "LEFT JOIN openedx_table_student_courseenrollment e ON e.course_id = o.id AND e.lms = o.lms "
    "LEFT JOIN openedx_table_courseware_studentmodule m ON m.course_id = o.id AND m.lms = o.lms "
    "LEFT JOIN openedx_table_grades_persistentcoursegrade g "
    "ON g.course_id = o.id AND g.lms = o.lms AND g.user_id = e.user_id "
    "GROUP BY o.id ORDER BY enrollments DESC, course LIMIT 8"
)
ENROLLMENTS = (
    "SELECT username, user_country, course_code, course_edition, enrollment_mode, "
    "percent_grade, is_student, days_since_enrolled FROM openedx_view_enrollments "
    "WHERE percent_grade IS NOT NULL ORDER BY percent_grade DESC, username LIMIT 8"
)


def main() -> None:
    env = server()
    DEMO.mkdir(parents=True, exist_ok=True)
    print(f"Generating the synthetic Open edX database {DATABASE}...", flush=True)
    courses = load_dataset(env)
    settings = write_settings(env, write_structures_csv(courses))
    password = env["PANORAMA_MYSQL_PASSWORD"]
    panorama(settings, "test-connections", password=password)
    panorama(settings, "create-datalake-tables", "--all", password=password)
    panorama(settings, "create-datalake-views", "--all", password=password)
    panorama(settings, "extract-and-load", "--all", "--force", password=password)
    panorama(settings, "extract-and-load", "--all", password=password)
    print("\nTop courses by active enrollments, from the typed views:")
    panorama(settings, "query", REPORT, password=password)
    print("\nA few enrollments from the analytics view openedx_view_enrollments:")
    panorama(settings, "query", ENROLLMENTS, password=password)
    print(
        f"\nAsk it yourself: venv/bin/python panorama.py --settings "
        f'{settings.relative_to(ROOT)} query "SELECT ..."'
    )


if __name__ == "__main__":
    main()
