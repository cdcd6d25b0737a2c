"""Analytics views: two LMS installations in one local lake; every row and cell of the three
views equals a computation written here in Python from the MySQL rows; the Athena form parses
as Trino SQL; missing tables are skipped with one line."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from click.testing import CliRunner

from panorama_elt.analytics import BUILTIN_VIEWS, builtin_views, placeholders, render
from panorama_elt.cli import main
from panorama_elt.reference import country_codes_file
from panorama_elt.settings import Settings, load_settings
from tests.builders import datalake_settings
from tests.conftest import connect, local_datalake, mysql_source, template_tables, write_settings

LMS_A, LMS_B = "lms.a.example.com", "lms.b.example.com"
TABLES = (
    "auth_user",
    "auth_userprofile",
    "student_courseenrollment",
    "student_courseaccessrole",
    "student_manualenrollmentaudit",
    "grades_persistentcoursegrade",
    "course_overviews_courseoverview",
)
STRUCTURE_FIELDS = (
    "module_location",
    "course_id",
    "organization",
    "course_code",
    "course_edition",
    "block_type",
    "display_name",
)


def cli(settings: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--settings", str(settings), *args], catch_exceptions=False)


def select(server: dict[str, Any], database: str, sql: str) -> list[dict[str, Any]]:
    with connect(server, database) as conn, conn.cursor() as cur:
        cur.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def ts(value: Any) -> Any:
    """A datetime as the typed view gives it (zero dates, which pymysql leaves as text: NULL)."""
    return None if isinstance(value, str) else value


@pytest.fixture(scope="module")
def second_db(mysql_server: dict[str, Any]) -> Any:
    """A second installation's database, with more manual enrollment history than the generator
    makes: several transitions per enrollment, a tie on time_stamp, NULL time stamps and reasons."""
    from panorama_elt.synthetic.openedx_mysql import create_schema, generate

    name = "panorama_test_analytics_b"
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    with connect(mysql_server, name) as conn:
        create_schema(conn)
        generate(conn, users=120, courses=4, studentmodule_rows=200, seed=23)
        with conn.cursor() as cur:
            cur.execute("SELECT id, user_id FROM student_courseenrollment ORDER BY id LIMIT 3")
            (e1, _), (e2, _), (e3, _) = cur.fetchall()
            extra = [
                (
                    f"a{e1}@x.org",
                    "2024-01-01 10:00:00",
                    "from unenrolled to enrolled",
                    "first",
                    1,
                    e1,
                ),
                (
                    f"a{e1}@x.org",
                    "2024-02-01 10:00:00.5",
                    "from enrolled to unenrolled",
                    None,
                    None,
                    e1,
                ),
                (f"a{e1}@x.org", None, "from unenrolled to enrolled", "no time", 2, e1),
                (
                    f"b{e2}@x.org",
                    "2024-03-01 00:00:00",
                    "from enrolled to unenrolled",
                    "x,y",
                    3,
                    e2,
                ),
                (
                    f"b{e2}@x.org",
                    "2024-03-01 00:00:00",
                    "from unenrolled to enrolled",
                    "tie",
                    3,
                    e2,
                ),
                (f"c{e3}@x.org", None, "from allowed to enrolled", None, None, e3),
            ]
            cur.executemany(
                "INSERT INTO student_manualenrollmentaudit "
                "(enrolled_email, time_stamp, state_transition, reason, enrolled_by_id, enrollment_id) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                extra,
            )
            # The same user holding two roles in one course, and a role in another org.
            cur.execute(
                "SELECT user_id, course_id FROM student_courseenrollment ORDER BY id LIMIT 1"
            )
            user, course = cur.fetchone()
            cur.executemany(
                "INSERT IGNORE INTO student_courseaccessrole (org, course_id, role, user_id) "
                "VALUES (%s, %s, %s, %s)",
                [
                    ("edX", course, "staff", user),
                    ("edX", course, "beta_testers", user),
                    ("OtherOrg", course, "instructor", user),
                ],
            )
    yield name
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


def structures_csv(path: Path, server: dict[str, Any], database: str) -> Path:
    """A course structures file for the installation: the course row and one chapter per course."""
    rows = select(server, database, "SELECT id, display_name FROM course_overviews_courseoverview")
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(STRUCTURE_FIELDS)
        for row in rows:
            key = row["id"]
            org, code, run = key.split(":", 1)[1].split("+")
            name = f"Structure of {row['display_name']}"
            writer.writerow((key, key, org, code, run, "course", name))
            chapter = f"block-v1:{org}+{code}+{run}+type@chapter+block@c1"
            writer.writerow((chapter, key, org, code, run, "chapter", "Chapter 1"))
    return path


def lms_settings(
    tmp_path: Path, server: dict[str, Any], database: str, lms: str, lake: Path
) -> Path:
    folder = tmp_path / lms
    folder.mkdir()
    tables = [t for t in template_tables() if t["name"] in TABLES]
    structures = {
        "type": "csv",
        "name": "structures",
        "location": str(structures_csv(folder / "structures.csv", server, database)),
        "tables": {
            "name": "course_structures",
            "fields": [{"name": f, "type": "varchar"} for f in STRUCTURE_FIELDS],
        },
    }
    return write_settings(
        folder / "settings.yaml",
        local_datalake(lake, lms=lms),
        [mysql_source(server, database, tables, name="openedx_mysql"), structures],
    )


@pytest.fixture(scope="module")
def two_lms_lake(
    tmp_path_factory: pytest.TempPathFactory,
    mysql_server: dict[str, Any],
    openedx_db: str,
    second_db: str,
) -> tuple[Path, dict[str, str]]:
    tmp_path = tmp_path_factory.mktemp("analytics")
    lake = tmp_path / "lake"
    installations = {LMS_A: openedx_db, LMS_B: second_db}
    for lms, database in installations.items():
        settings = lms_settings(tmp_path, mysql_server, database, lms, lake)
        for command in (
            ["create-datalake-tables", "--all"],
            ["create-datalake-views", "--all"],
            ["extract-and-load", "--all", "--force"],
        ):
            result = cli(settings, *command)
            assert result.exit_code == 0, result.output
    return settings, installations


def lake_sql(settings_file: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the local lake's DuckDB file."""
    lake = load_settings(settings_file).datalake
    assert lake.path is not None
    with duckdb.connect(str(lake.path / "panorama.duckdb"), read_only=True) as db:
        return db.execute(sql).fetchall()


def view(settings_file: Path, name: str) -> list[tuple[Any, ...]]:
    return lake_sql(settings_file, f'SELECT * FROM "{name}"')


def today(settings_file: Path) -> date:
    """DuckDB's current_date, the day days_since_enrolled counts to."""
    [(day,)] = lake_sql(settings_file, "SELECT current_date")
    assert isinstance(day, date)
    return day


def assert_same(expected: list[tuple[Any, ...]], actual: list[tuple[Any, ...]]) -> None:
    assert len(actual) == len(expected)
    missing = sorted(set(expected) - set(actual), key=repr)[:2]
    extra = sorted(set(actual) - set(expected), key=repr)[:2]
    assert not missing and not extra, f"expected, not in view: {missing}; in view only: {extra}"
    assert sorted(actual, key=repr) == sorted(expected, key=repr)


# The expectations, computed from the MySQL rows of each installation.


def expected_roles(server: dict[str, Any], database: str, lms: str) -> list[tuple[Any, ...]]:
    counts: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in select(server, database, "SELECT * FROM student_courseaccessrole"):
        counts[(r["org"], r["course_id"], r["user_id"])][r["role"]] += 1
    return [
        (*key, c["staff"], c["instructor"], c["course_creator_group"], c["beta_testers"], lms)
        for key, c in counts.items()
    ]


def expected_audit(server: dict[str, Any], database: str, lms: str) -> list[tuple[Any, ...]]:
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in select(server, database, "SELECT * FROM student_manualenrollmentaudit"):
        r["time_stamp"] = ts(r["time_stamp"])
        groups[(r["enrollment_id"], r["enrolled_email"])].append(r)
    result = []
    for (enrollment, email), rows in groups.items():
        # Time order, ties by id, rows without a time stamp last.
        rows.sort(key=lambda r: (r["time_stamp"] is None, r["time_stamp"] or datetime.min, r["id"]))
        timed = [r for r in rows if r["time_stamp"] is not None]

        def joined(values: list[Any]) -> str:
            return ",".join("" if v is None else str(v) for v in values)

        result.append(
            (
                enrollment,
                len(rows),
                email,
                lms,
                timed[-1]["state_transition"] if timed else None,
                timed[-1]["time_stamp"] if timed else None,
                timed[0]["time_stamp"] if timed else None,
                timed[0]["reason"] if timed else None,
                joined([r["state_transition"] for r in rows]),
                joined([r["reason"] for r in rows]),
                joined([r["enrolled_by_id"] for r in rows]),
                joined(
                    [
                        r["time_stamp"] and r["time_stamp"].strftime("%Y-%m-%d %H:%M:%S.%f")
                        for r in rows
                    ]
                ),
            )
        )
    return result


def percent(value: float) -> float:
    """round(x * 100) as SQL rounds: half away from zero, on the double x * 100."""
    return float(Decimal(value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_enrollments(
    server: dict[str, Any], database: str, lms: str, structures: Path, day: date
) -> list[tuple[Any, ...]]:
    def by(table: str, *keys: str) -> dict[Any, list[dict[str, Any]]]:
        index: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for r in select(server, database, f"SELECT * FROM {table}"):
            index[tuple(r[k] for k in keys)].append(r)
        return index

    users = by("auth_user", "id")
    profiles = by("auth_userprofile", "user_id")
    grades = by("grades_persistentcoursegrade", "user_id", "course_id")
    overviews = by("course_overviews_courseoverview", "id")
    with structures.open(encoding="utf-8", newline="") as f:
        courses = {
            r["module_location"]: r for r in csv.DictReader(f) if r["block_type"] == "course"
        }
    with country_codes_file().open(encoding="utf-8", newline="") as f:
        countries = {r["alpha2_code"]: r for r in csv.DictReader(f)}
    roles: dict[tuple[Any, Any], list[tuple[Any, ...]]] = defaultdict(list)
    for role in expected_roles(server, database, lms):
        roles[(role[1], role[2])].append(role)
    audits: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for audit in expected_audit(server, database, lms):
        audits[audit[0]].append(audit)
    none: dict[str, Any] = defaultdict(lambda: None)
    result = []
    for e in select(server, database, "SELECT * FROM student_courseenrollment"):
        u = (users.get((e["user_id"],)) or [none])[0]
        p = (profiles.get((e["user_id"],)) or [none])[0]
        g = (grades.get((e["user_id"], e["course_id"])) or [none])[0]
        o = (overviews.get((e["course_id"],)) or [none])[0]
        s = courses.get(e["course_id"], none)
        c = countries.get(p["country"], none)
        for r in roles.get((e["course_id"], e["user_id"])) or [(None,) * 8]:
            for m in audits.get(e["id"]) or [(None,) * 12]:
                created = ts(e["created"])
                last_transition, last_time = m[4], m[5]
                staff, instructor, creator, beta = r[3:7]
                result.append(
                    (
                        e["user_id"],
                        u["username"],
                        p["name"],
                        u["email"],
                        p["country"],
                        None if c["latitude"] in (None, "") else float(c["latitude"]),
                        None if c["longitude"] in (None, "") else float(c["longitude"]),
                        lms,
                        s["organization"],
                        s["course_code"],
                        s["course_edition"],
                        s["display_name"],
                        e["course_id"],
                        ts(o["start"]),
                        ts(o["end"]),
                        e["id"],
                        None if created is None else (day - created.date()).days,
                        e["is_active"],
                        e["mode"],
                        created,
                        last_time if (last_transition or "").endswith(" to unenrolled") else None,
                        None if g["percent_grade"] is None else percent(g["percent_grade"]),
                        g["letter_grade"],
                        ts(g["modified"]),
                        u["is_active"],
                        u["is_staff"],
                        staff,
                        instructor,
                        beta,
                        creator,
                        not (staff or instructor or creator or u["is_staff"]),
                        last_transition,
                        last_time,
                        m[1],
                        m[11],
                        m[8],
                        m[9],
                        m[10],
                    )
                )
    return result


@pytest.mark.parametrize(
    "name, expectation, shows",
    [
        # One user both staff and beta tester of a course.
        ("view_student_courseaccessrole", expected_roles, lambda row: row[3] and row[6]),
        # An enrollment with three transitions.
        ("view_student_manualenrollmentaudit", expected_audit, lambda row: row[1] == 3),
    ],
)
def test_grouping_views_equal_python(
    two_lms_lake: tuple[Path, dict[str, str]],
    mysql_server: dict[str, Any],
    name: str,
    expectation: Any,
    shows: Any,
) -> None:
    settings, installations = two_lms_lake
    expected = [
        row for lms, db in installations.items() for row in expectation(mysql_server, db, lms)
    ]
    assert any(shows(row) for row in expected)
    assert_same(expected, view(settings, f"openedx_{name}"))


def test_enrollments_view_equals_python(
    two_lms_lake: tuple[Path, dict[str, str]], mysql_server: dict[str, Any]
) -> None:
    settings, installations = two_lms_lake
    day = today(settings)
    expected = [
        row
        for lms, db in installations.items()
        for row in expected_enrollments(
            mysql_server, db, lms, settings.parent.parent / lms / "structures.csv", day
        )
    ]
    # Both installations have users of the same ids: the lms joins keep them apart.
    ids = defaultdict(set)
    for row in expected:
        ids[row[0]].add(row[7])
    assert any(len(v) == 2 for v in ids.values())
    assert any(row[5] is not None for row in expected)  # countries found
    assert any(row[20] is not None for row in expected)  # an unenrollment date
    actual = view(settings, "openedx_view_enrollments")
    assert len(actual[0]) == 38
    assert_same(expected, actual)


def test_athena_sql_parses_as_trino() -> None:
    settings = Settings(Path("settings.yaml"), datalake_settings(), ())
    views = builtin_views(settings)
    assert [v.name for v in views] == [f"openedx_{k}" for k in BUILTIN_VIEWS]
    names = {p: f"openedx_table_{p}" for v in views for p in placeholders(v.sql)}
    for v in views:
        sql = render(v.sql, names, "panorama")
        assert isinstance(sqlglot.parse_one(sql, read="trino"), sqlglot.exp.Select)
        assert '"panorama"."openedx_table_' in sql and "{" not in sql


def test_view_of_a_missing_table_is_skipped_with_one_line(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str
) -> None:
    tables = [t for t in template_tables() if t["name"] == "student_courseaccessrole"]
    settings = write_settings(
        tmp_path / "settings.yaml",
        local_datalake(tmp_path / "lake"),
        [mysql_source(mysql_server, openedx_db, tables)],
    )
    assert cli(settings, "create-datalake-tables", "--all").exit_code == 0
    result = cli(settings, "create-datalake-views", "--all")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "openedx_view_student_courseaccessrole: analytics view" in lines
    assert (
        "openedx_view_student_manualenrollmentaudit: skipped: table "
        "student_manualenrollmentaudit not in the settings"
    ) in lines
    [enrollments] = [line for line in lines if line.startswith("openedx_view_enrollments:")]
    assert enrollments.startswith(
        "openedx_view_enrollments: skipped: table student_courseenrollment, "
    )
    assert enrollments.endswith("; view view_student_manualenrollmentaudit not created")
    assert view(settings, "openedx_view_student_courseaccessrole") == []


# User views (datalake.views_folder)


def folder_settings(
    tmp_path: Path, server: dict[str, Any], database: str, views: dict[str, str]
) -> Path:
    folder = tmp_path / "views"
    folder.mkdir()
    for name, sql in views.items():
        (folder / name).write_text(sql, encoding="utf-8")
    tables = [t for t in template_tables() if t["name"] == "student_courseaccessrole"]
    return write_settings(
        tmp_path / "settings.yaml",
        local_datalake(tmp_path / "lake", views_folder="views"),
        [mysql_source(server, database, tables)],
    )


def test_user_views_are_created_after_the_builtin_ones(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str
) -> None:
    views = {
        # Reads a built-in analytics view and a typed view named with {base_prefix}.
        "course_staff.sql": (
            "-- staff per course\nSELECT course_id, sum(is_course_staff) AS staff, lms\n"
            "FROM {view_student_courseaccessrole} GROUP BY course_id, lms"
        ),
        "role_names.sql": "SELECT DISTINCT role FROM {base_prefix}_table_student_courseaccessrole",
        "needs_missing.sql": "SELECT * FROM {auth_user}",
        "notes.txt": "not a view",
    }
    settings = folder_settings(tmp_path, mysql_server, openedx_db, views)
    assert cli(settings, "create-datalake-tables", "--all").exit_code == 0
    result = cli(settings, "create-datalake-views", "--all")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines.index("course_staff: analytics view") > lines.index(
        "openedx_view_student_courseaccessrole: analytics view"
    )
    assert "role_names: analytics view" in lines
    assert "needs_missing: skipped: table auth_user not in the settings" in lines
    assert not any(line.startswith("notes") for line in lines)
    assert cli(settings, "extract-and-load", "--all").exit_code == 0
    roles = select(mysql_server, openedx_db, "SELECT course_id, role FROM student_courseaccessrole")
    staff: dict[str, int] = defaultdict(int)
    for r in roles:
        staff[r["course_id"]] += r["role"] == "staff"
    assert_same(
        [(course, n, "lms.example.com") for course, n in staff.items()],
        [(c, int(n), lms) for c, n, lms in view(settings, "course_staff")],
    )
    assert sorted(r for (r,) in view(settings, "role_names")) == sorted({r["role"] for r in roles})

    result = cli(settings, "drop-datalake-tables", "--all")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == ["role_names: dropped", "needs_missing: dropped"]
    everything = (
        "SELECT view_name FROM duckdb_views() WHERE NOT internal "
        "UNION ALL SELECT table_name FROM duckdb_tables()"
    )
    names = {n for (n,) in lake_sql(settings, everything)}
    assert names == {"panorama_partitions"}, names


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELEC 1", "bad.sql: not valid Athena SQL: "),
        ("SELECT 1; SELECT 2", "bad.sql: must hold exactly one SELECT statement"),
        ("DROP VIEW x", "bad.sql: must hold exactly one SELECT statement"),
        (
            "SELECT no_such_column FROM {student_courseaccessrole}",
            "bad.sql: DuckDB: Binder Error: ",
        ),
    ],
)
def test_bad_user_view_is_one_line_naming_the_file(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str, sql: str, message: str
) -> None:
    settings = folder_settings(tmp_path, mysql_server, openedx_db, {"bad.sql": sql})
    assert cli(settings, "create-datalake-tables", "--all").exit_code == 0
    result = cli(settings, "create-datalake-views", "--all")
    assert result.exit_code == 1
    [line] = [x for x in result.output.splitlines() if x.startswith("bad: ")]
    assert line.startswith(f"bad: {tmp_path / 'views' / message}"), line


def test_views_folder_that_is_not_a_folder(
    tmp_path: Path, mysql_server: dict[str, Any], openedx_db: str
) -> None:
    settings = folder_settings(tmp_path, mysql_server, openedx_db, {})
    (tmp_path / "views").rmdir()
    result = cli(settings, "create-datalake-views", "--all")
    assert result.exit_code == 1
    assert f"Error: datalake.views_folder: {tmp_path / 'views'} is not a folder" in result.output


# AWS: the same views, as Athena statements


def test_athena_gets_the_views_in_order_with_qualified_names(tmp_path: Path) -> None:
    import boto3
    from moto import mock_aws

    from panorama_elt.analytics import create_views
    from panorama_elt.datalakes.aws import AwsDatalake
    from panorama_elt.settings import DatasourceSettings, TableSettings

    empty = Settings(tmp_path / "s.yaml", datalake_settings(), ())
    used = {p for v in builtin_views(empty) for p in placeholders(v.sql)}
    names = used - {"country_codes", *BUILTIN_VIEWS}
    tables = tuple(
        TableSettings(n, "db", f"openedx_raw_{n}", f"openedx_table_{n}", ()) for n in sorted(names)
    )
    lake_settings = datalake_settings(
        type="aws",
        bucket="panorama-test",
        aws_region="us-east-1",
        athena_output_location="s3://panorama-test/results/",
    )
    settings = Settings(
        tmp_path / "s.yaml", lake_settings, (DatasourceSettings("mysql", "db", tables),)
    )
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="panorama-test")
        lake = AwsDatalake(lake_settings)
        sent: list[str] = []
        lake.athena.meta.events.register(
            "before-parameter-build.athena.StartQueryExecution",
            lambda params, **_: sent.append(params["QueryString"]),
        )
        outcomes = list(create_views(settings, lake))
    assert [(o.view.name, o.skipped, o.error) for o in outcomes] == [
        (f"openedx_{key}", None, None) for key in BUILTIN_VIEWS
    ]
    assert len(sent) == 3
    for key, statement in zip(BUILTIN_VIEWS, sent, strict=True):
        head = f'CREATE OR REPLACE VIEW "openedx_{key}" AS\n'
        assert statement.startswith(head)
        select = statement[len(head) :]
        assert isinstance(sqlglot.parse_one(select, read="trino"), sqlglot.exp.Select)
        assert "{" not in select and "--" not in select
    assert '"panorama"."openedx_view_student_courseaccessrole" r' in sent[2]
    assert '"panorama"."openedx_table_country_codes" c' in sent[2]
