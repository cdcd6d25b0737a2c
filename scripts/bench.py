"""make bench: the extractor against the raw dump (its floor), at two dataset sizes, in one run.

Sizes (BENCH_SIZES, default "a,b"): a = 200,000 courseware_studentmodule rows, 200 courses,
20,000 users; b = 1,000,000 rows, 500 courses, 50,000 users. Each lives in its own database of
the project's private MariaDB (bench_a, bench_b), built once by the synthetic generator and
reused while its marker table says it matches (same sizes, seed and generator source).

Each repetition (BENCH_REPEAT, default 3) runs, per size and in this order:
  floor         `mariadb --batch --quick` dump of exactly the columns the tool extracts, every
                table of the template's mysql datasource, one file per table
  full          extract-and-load --all --force into a fresh local datalake
  incr floor    the same dump of what an incremental run reads (the changed courses only)
  incremental   extract-and-load --all after touching 3% of the studentmodule rows, all in 10%
                of the courses (every other row's `modified` lies far in the past)
  full aws      extract-and-load --all --force into a moto server (BENCH_AWS=0 skips it)
  full parquet  the same full run into a local datalake with file_format: parquet, then three
                dashboard queries over the typed views of both lakes, each in a fresh process
                (cold DuckDB; the OS page cache may hold the files): time and bytes read
                (BENCH_PARQUET=0 skips it)
  baseline ...  full and incremental of another revision (BENCH_BASELINE=<git rev>, off by default)

Measured: wall seconds, rows/s, peak RSS of the largest process (wait4's ru_maxrss, what
`/usr/bin/time -v` reports), peak PSS summed over the process tree (sampled), SQL statements
(the tool runs as its own MySQL user, counted in USER_STATISTICS; the server's global
Questions delta is kept too), files and bytes written. After every run the datalake is checked
against the source (rows per table, rows and sum of ids per studentmodule course, the touched
rows' new `modified`): any difference fails the benchmark. Medians are printed with the targets
and everything is written to build/bench/results.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pymysql
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
PYTHON = ROOT / "venv" / "bin" / "python"
TIME = "/usr/bin/time"  # GNU time (Debian package `time`; scripts/bench.sh installs it)
GENERATOR = ROOT / "panorama_elt" / "synthetic" / "openedx_mysql.py"
TEMPLATE = ROOT / "panorama_settings.yaml.template"

SIZES = {
    "a": {"users": 20_000, "courses": 200, "studentmodule_rows": 200_000},
    "b": {"users": 50_000, "courses": 500, "studentmodule_rows": 1_000_000},
}
SEED = 1
USER, PASSWORD = "panorama_bench", "panorama"  # the tool's own MySQL user, for counting
BIG = "courseware_studentmodule"
TOUCH_SHARE, TOUCH_COURSES = 0.03, 10  # 3% of the rows, in every 10th course (10%)
LMS = "lms.example.com"
BUCKET = "panorama-bench"

# The targets of the issue, checked at the largest size.
TARGET_FULL_VS_FLOOR = 2.0
TARGET_RSS_MIB = 120
TARGET_RSS_GROWTH = 0.15
TARGET_INCREMENTAL_VS_FULL = 0.35
STATEMENTS_PER_TABLE, STATEMENTS_CONSTANT = 2, 10


class BenchError(Exception):
    """A run that failed or lost data: the benchmark stops."""


# --- MariaDB -----------------------------------------------------------------------------


def server_env() -> dict[str, str]:
    env = ROOT / "build" / "mariadb" / "env"
    return dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)


def root_connection() -> Any:
    """Root over the private server's socket (mariadb.sh sets root up that way)."""
    return pymysql.connect(
        unix_socket=server_env()["PANORAMA_MYSQL_SOCKET"], user="root", autocommit=True
    )


def user_connection(database: str | None = None) -> Any:
    env = server_env()
    return pymysql.connect(
        host=env["PANORAMA_MYSQL_HOST"],
        port=int(env["PANORAMA_MYSQL_PORT"]),
        user=USER,
        password=PASSWORD,
        database=database,
        charset="utf8mb4",
        autocommit=True,
    )


def setup_server(root: Any) -> None:
    """The bench user (all rights on bench_* only) and per-user statement counters."""
    with root.cursor() as cur:
        for host in ("127.0.0.1", "localhost"):
            cur.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"ALTER USER '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON `bench\\_%`.* TO '{USER}'@'{host}'")
        cur.execute("SET GLOBAL userstat = 1")


class StatementCounter:
    """SQL statements run by the bench user, and the server's global Questions counter."""

    def __init__(self, root: Any) -> None:
        self.root = root
        # Our own reads move Questions too: measure how much, to take it off.
        first = self._read()[1]
        self.own = self._read()[1] - first

    def _read(self) -> tuple[int, int]:
        with self.root.cursor() as cur:
            cur.execute(
                "SELECT SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS "
                "FROM information_schema.USER_STATISTICS WHERE USER = %s",
                [USER],
            )
            row = cur.fetchone()
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            questions = int(cur.fetchone()[1])
        return (int(row[0]) if row else 0), questions

    def start(self) -> tuple[int, int]:
        return self._read()

    def stop(self, started: tuple[int, int]) -> tuple[int, int]:
        """(statements of the bench user, global Questions delta minus our own reads)."""
        user, questions = self._read()
        return user - started[0], questions - started[1] - self.own


# --- datasets ----------------------------------------------------------------------------


def template_tables() -> list[dict[str, Any]]:
    data = yaml.safe_load(TEMPLATE.read_text())
    return next(ds for ds in data["datasources"] if ds["type"] == "mysql")["tables"]


def extracted_columns(table: dict[str, Any]) -> list[str]:
    """The columns extract-and-load selects: partition fields, then the non-constant fields."""
    parts = list((table.get("partitions") or {}).get("partition_fields") or [])
    return parts + [
        f["name"] for f in table["fields"] if f["name"] not in parts and "value" not in f
    ]


def ensure_dataset(size: str, root: Any) -> dict[str, Any]:
    """Build bench_<size> unless its marker says it is already there; return the marker."""
    database = f"bench_{size}"
    spec = {**SIZES[size], "seed": SEED, "generator": digest(GENERATOR)}
    with root.cursor() as cur:
        try:
            cur.execute(
                f"SELECT spec, touched_rows, touched_courses FROM `{database}`._bench_dataset"
            )
            row = cur.fetchone()
            cur.execute(f"SELECT COUNT(*) FROM `{database}`.`{BIG}`")
            rows = cur.fetchone()[0]
        except pymysql.err.MySQLError:
            row, rows = None, -1
    if row and json.loads(row[0]) == spec and rows == spec["studentmodule_rows"]:
        print(f"dataset {database}: cached ({rows:,} {BIG} rows)", flush=True)
        return {"spec": spec, "touched_rows": row[1], "touched_courses": row[2], "built": False}
    print(f"dataset {database}: building {SIZES[size]} (seed {SEED})...", flush=True)
    started = time.monotonic()
    env = server_env()
    with root.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    subprocess.run(
        [
            str(PYTHON), "-m", "panorama_elt.synthetic.openedx_mysql",
            "--host", env["PANORAMA_MYSQL_HOST"], "--port", env["PANORAMA_MYSQL_PORT"],
            "--user", USER, "--password", PASSWORD, "--database", database,
            "--users", str(spec["users"]), "--courses", str(spec["courses"]),
            "--studentmodule-rows", str(spec["studentmodule_rows"]), "--seed", str(SEED),
        ],
        check=True,
        cwd=ROOT,
    )  # fmt: skip
    touch_rows = int(spec["studentmodule_rows"] * TOUCH_SHARE)
    with root.cursor() as cur:
        cur.execute(f"USE `{database}`")
        # Only the rows a benchmark touches may look recently modified.
        cur.execute(
            f"UPDATE `{BIG}` SET modified = modified - INTERVAL 400 DAY WHERE modified >= NOW() - INTERVAL 2 DAY"
        )
        cur.execute("CREATE TABLE _bench_touch (id BIGINT UNSIGNED PRIMARY KEY)")
        cur.execute(
            f"INSERT INTO _bench_touch SELECT m.id FROM `{BIG}` m JOIN ("
            "  SELECT course_id FROM (SELECT course_id, ROW_NUMBER() OVER (ORDER BY BINARY course_id) AS n"
            f"  FROM (SELECT DISTINCT course_id FROM `{BIG}`) d) c WHERE n % {TOUCH_COURSES} = 1"
            f") c USING (course_id) ORDER BY CRC32(m.id), m.id LIMIT {touch_rows}"
        )
        cur.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT m.course_id) FROM _bench_touch JOIN `{BIG}` m USING (id)"
        )
        touched_rows, touched_courses = cur.fetchone()
        cur.execute(
            "CREATE TABLE _bench_dataset (spec TEXT, touched_rows INT, touched_courses INT)"
        )
        cur.execute(
            "INSERT INTO _bench_dataset VALUES (%s, %s, %s)",
            [json.dumps(spec), touched_rows, touched_courses],
        )
    print(f"dataset {database}: built in {time.monotonic() - started:.0f} s", flush=True)
    return {
        "spec": spec,
        "touched_rows": touched_rows,
        "touched_courses": touched_courses,
        "built": True,
    }


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def touch(database: str) -> str:
    """Age the previous touch, then touch this one; return the server time of the touch."""
    with user_connection(database) as conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE `{BIG}` SET modified = modified - INTERVAL 400 DAY WHERE modified >= NOW() - INTERVAL 2 DAY"
        )
        cur.execute("SELECT NOW(6)")
        now = str(cur.fetchone()[0])
        cur.execute(f"UPDATE `{BIG}` m JOIN _bench_touch t USING (id) SET m.modified = %s", [now])
    return now


def source_counts(database: str) -> dict[str, Any]:
    """Rows per table, and rows and sum of ids per studentmodule course, as the source has them."""
    counts: dict[str, Any] = {}
    with user_connection(database) as conn, conn.cursor() as cur:
        for table in template_tables():
            cur.execute(f"SELECT COUNT(*) FROM `{table['name']}`")
            counts[table["name"]] = cur.fetchone()[0]
        cur.execute(f"SELECT CAST(course_id AS BINARY), COUNT(*), SUM(id) FROM `{BIG}` GROUP BY 1")
        counts["by_course"] = {c.decode(): (n, int(s)) for c, n, s in cur.fetchall()}
        cur.execute(
            f"SELECT GROUP_CONCAT(DISTINCT QUOTE(m.course_id)) FROM _bench_touch JOIN `{BIG}` m USING (id)"
        )
        counts["touched_in"] = cur.fetchone()[0]
    return counts


# --- settings and runs ---------------------------------------------------------------------


def write_settings(
    size: str, folder: Path, aws_endpoint: str | None = None, file_format: str = "csv"
) -> Path:
    """The shipped template, mysql datasource only, pointed at bench_<size> and a datalake."""
    data = yaml.safe_load(TEMPLATE.read_text())
    if aws_endpoint:
        data["datalake"] = {
            "type": "aws",
            "panorama_raw_data_bucket": BUCKET,
            "base_prefix": "openedx",
            "aws_access_key": "testing",
            "aws_secret_access_key": "testing",
            "aws_region": "us-east-1",
            "endpoint_url": aws_endpoint,
            "datalake_database": "panorama",
            "datalake_workgroup": "primary",
            "athena_output_location": f"s3://{BUCKET}/athena-results/",
            "base_partitions": [{"name": "lms", "type": "varchar", "value": LMS}],
        }
    else:
        data["datalake"]["path"] = str(folder / "lake")
    if file_format != "csv":
        data["datalake"]["file_format"] = file_format
        data["datalake"].pop("compression", None)
    data["datasources"] = [ds for ds in data["datasources"] if ds["type"] == "mysql"]
    env = server_env()
    for ds in data["datasources"]:
        ds.update(
            mysql_host=env["PANORAMA_MYSQL_HOST"],
            mysql_port=int(env["PANORAMA_MYSQL_PORT"]),
            mysql_username=USER,
            mysql_password="${PANORAMA_BENCH_MYSQL_PASSWORD}",
            mysql_database=f"bench_{size}",
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("panorama_settings_aws.yaml" if aws_endpoint else "panorama_settings.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Run:
    """One measured command."""

    name: str
    wall: float
    max_rss: int  # bytes, largest single process
    tree_pss: int  # bytes, peak of the sum over the process tree
    statements: int
    questions: int
    rows: int
    files: int
    bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


class TreeSampler(threading.Thread):
    """Peak of the PSS (and RSS) summed over a process and its descendants, every 20 ms.

    PSS splits shared pages between the processes sharing them: the sum is what the tree
    really holds (RSS sums would count shared libraries once per process).
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_pss = self.peak_rss = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pss = rss = 0
            for pid in descendants(self.pid):
                p, r = memory_of(pid)
                pss += p
                rss += r
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.done.wait(0.02)


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def memory_of(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in bytes; zeros once it is gone."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return pss, rss


def measure(
    name: str,
    command: list[str],
    counter: StatementCounter,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> Run:
    """Run a command, measuring wall time, memory and statements; fail loudly if it fails.

    The largest process's peak RSS comes from GNU time, started from this small-footprint
    point of view: a child forked from this (large) Python process would report this
    process's RSS as its own peak, whatever it then executes.
    """
    started_count = counter.start()
    rss_file = log.with_suffix(".maxrss")
    timed = [TIME, "-f", "%M", "-o", str(rss_file), *command]
    with open(log, "wb") as out:
        clock = time.perf_counter()
        process = subprocess.Popen(timed, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        sampler = TreeSampler(process.pid)
        sampler.start()
        process.wait()
        wall = time.perf_counter() - clock
        sampler.done.set()
        sampler.join()
    statements, questions = counter.stop(started_count)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BenchError(f"{name}: exit code {process.returncode}; the end of {log}:\n{tail}")
    max_rss = int(rss_file.read_text().split()[-1]) * 1024
    return Run(name, wall, max_rss, sampler.peak_pss, statements, questions, 0, 0, 0)


def slug(name: str) -> str:
    return name.replace(" ", "-")


def panorama(settings: Path, *args: str, code: Path = ROOT) -> list[str]:
    return [str(PYTHON), str(code / "panorama.py"), "--settings", str(settings), *args]


def tool_env() -> dict[str, str]:
    return {**os.environ, "PANORAMA_BENCH_MYSQL_PASSWORD": PASSWORD}


def setup_lake(settings: Path, code: Path) -> None:
    """A fresh datalake with its raw tables and views (not measured)."""
    lake = settings.parent / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    for command in ("create-datalake-tables", "create-datalake-views"):
        result = subprocess.run(
            panorama(settings, command, "--all", code=code),
            capture_output=True,
            text=True,
            env=tool_env(),
            cwd=code,
        )
        if result.returncode != 0:
            raise BenchError(f"{command} failed:\n{result.stdout}\n{result.stderr}")


def run_tool(
    name: str,
    settings: Path,
    args: list[str],
    counter: StatementCounter,
    logs: Path,
    code: Path = ROOT,
) -> Run:
    results = logs / f"{slug(name)}.results.json"
    run = measure(
        name,
        panorama(settings, "extract-and-load", *args, "--results-file", str(results), code=code),
        counter,
        logs / f"{slug(name)}.log",
        tool_env(),
        # In the code's own folder: a revision's processes import that revision, never this one.
        cwd=code,
    )
    document = json.loads(results.read_text())
    failed = [t["table"] for t in document["tables"] if t["status"] != "ok"]
    if failed:
        raise BenchError(f"{name}: tables failed: {failed}")
    run.rows = sum(t["rows"] for t in document["tables"])
    run.files = sum(t["partitions_written"] for t in document["tables"])
    run.bytes = sum(t["bytes"] for t in document["tables"])
    run.extra["tables"] = {
        t["table"]: {"rows": t["rows"], "seconds": t["seconds"], "files": t["partitions_written"]}
        for t in document["tables"]
    }
    return run


def dump_script(database: str, folder: Path, changed_in: str | None = None) -> list[str]:
    """The floor: one mariadb --batch --quick per table, exactly the tool's columns, to files."""
    cnf = BUILD / "client.cnf"
    env = server_env()
    cnf.write_text(
        f"[client]\nhost={env['PANORAMA_MYSQL_HOST']}\nport={env['PANORAMA_MYSQL_PORT']}\n"
        f"user={USER}\npassword={PASSWORD}\n"
    )
    cnf.chmod(0o600)
    client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    lines = ["set -e"]
    for table in template_tables():
        incremental = bool((table.get("partitions") or {}).get("interval"))
        columns = ", ".join(f"`{c}`" for c in extracted_columns(table))
        sql = f"SELECT {columns} FROM `{table['name']}`"
        if changed_in is not None and incremental:
            parts = table["partitions"]["partition_fields"]
            sql += f" WHERE `{parts[0]}` IN ({changed_in})"
        query = folder.parent / f"{folder.name}-{table['name']}.sql"
        query.write_text(sql + "\n")
        lines.append(
            f"{client} --defaults-file={cnf} --batch --quick {database} < {query} > {folder}/{table['name']}.tsv"
        )
    script = folder.parent / f"{folder.name}.sh"
    script.write_text("\n".join(lines) + "\n")
    return ["bash", str(script)]


def run_floor(
    name: str, size: str, counter: StatementCounter, logs: Path, changed_in: str | None = None
) -> Run:
    folder = BUILD / size / slug(name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run = measure(
        name, dump_script(f"bench_{size}", folder, changed_in), counter, logs / f"{slug(name)}.log"
    )
    files = list(folder.iterdir())
    run.files, run.bytes = len(files), sum(f.stat().st_size for f in files)
    # Lines minus the header line of each file (values never hold a raw newline in --batch).
    run.rows = sum(max(sum(1 for _ in f.open("rb")) - 1, 0) for f in files)
    shutil.rmtree(folder)
    return run


# --- checks ------------------------------------------------------------------------------


def check_local(
    name: str,
    settings: Path,
    source: dict[str, Any],
    touched_at: str | None = None,
    touched_rows: int = 0,
) -> None:
    """The local datalake holds exactly the source's rows; fail loudly otherwise."""
    problems = []
    db = duckdb.connect(str(settings.parent / "lake" / "panorama.duckdb"), read_only=True)
    try:
        for table in template_tables():
            view = f"openedx_table_{table['name']}"
            got = db.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0]
            if got != source[table["name"]]:
                problems.append(
                    f"{table['name']}: {got} rows in the datalake, {source[table['name']]} in MySQL"
                )
        by_course = {
            c: (n, int(s))
            for c, n, s in db.execute(
                f'SELECT course_id, count(*), sum(id) FROM "openedx_table_{BIG}" GROUP BY 1'
            ).fetchall()
        }
        if by_course != source["by_course"]:
            wrong = sorted(set(by_course.items()) ^ set(source["by_course"].items()))[:5]
            problems.append(f"{BIG}: partitions differ from MySQL (rows, sum of ids), e.g. {wrong}")
        if touched_at is not None:
            fresh = db.execute(
                f'SELECT count(*) FROM "openedx_table_{BIG}" WHERE modified = CAST(? AS TIMESTAMP)',
                [touched_at],
            ).fetchone()[0]
            if fresh != touched_rows:
                problems.append(
                    f"{BIG}: {fresh} rows carry the touch's modified time, {touched_rows} were touched"
                )
    finally:
        db.close()
    if problems:
        raise BenchError(f"{name}: the datalake is not the source:\n  " + "\n  ".join(problems))


def check_aws(name: str, endpoint: str, local: Run) -> None:
    """Same objects and bytes in S3 as the local full run wrote (files hold the same rows)."""
    import boto3  # noqa: PLC0415 - only when the AWS run is on

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    count = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="openedx/"):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".csv"):
                count += 1
                size += item["Size"]
    if (count, size) != (local.files, local.bytes):
        raise BenchError(
            f"{name}: {count} objects, {size} bytes in S3; the local run wrote {local.files} files, {local.bytes} bytes"
        )


# --- CSV vs Parquet: dashboard queries over the typed views -----------------------------------

# Three typical dashboard queries (the one-course query takes the first course).
QUERIES = {
    "avg grade per course": (
        f'SELECT course_id, avg(grade / max_grade) FROM "openedx_table_{BIG}" '
        "WHERE max_grade > 0 GROUP BY course_id"
    ),
    "enrollments per course, mode": (
        'SELECT course_id, "mode", count(*) FROM "openedx_table_student_courseenrollment" '
        'GROUP BY course_id, "mode"'
    ),
    "problems per learner, 1 course": (
        f'SELECT student_id, count(*) FROM "openedx_table_{BIG}" WHERE course_id = ? '
        "AND module_type = 'problem' AND grade IS NOT NULL GROUP BY student_id"
    ),
}
# Run in a fresh process per query (cold: no DuckDB buffer cache; the OS page cache may hold
# the files). Bytes read: the process's rchar (bytes its threads read) over the query alone.
_QUERY = """
import duckdb, json, sys, time
def rchar():
    with open("/proc/self/io") as f:
        return int(next(l for l in f if l.startswith("rchar")).split()[1])
db = duckdb.connect(sys.argv[1], read_only=True)
params = [sys.argv[3]] if "?" in sys.argv[2] else []
before, clock = rchar(), time.perf_counter()
rows = db.execute(sys.argv[2], params).fetchall()
print(json.dumps({"wall": time.perf_counter() - clock, "read": rchar() - before, "rows": len(rows)}))
"""


def run_queries(file_format: str, settings: Path, course: str) -> list[Run]:
    """Each dashboard query, cold, over the lake of ``settings``."""
    database = str(settings.parent / "lake" / "panorama.duckdb")
    runs = []
    for name, sql in QUERIES.items():
        result = subprocess.run(
            [str(PYTHON), "-c", _QUERY, database, sql, course],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if result.returncode != 0:
            raise BenchError(f"query {name!r} over {file_format}: {result.stderr[-2000:]}")
        got = json.loads(result.stdout)
        if not got["rows"]:
            raise BenchError(f"query {name!r} over {file_format}: no rows")
        runs.append(
            Run(f"q {name} {file_format}", got["wall"], 0, 0, 0, 0, got["rows"], 0, got["read"])
        )
    return runs


# --- moto ----------------------------------------------------------------------------------


class Moto:
    """A moto server in a subprocess (S3, Glue, Athena over HTTP)."""

    def __init__(self) -> None:
        import socket  # noqa: PLC0415

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [str(PYTHON), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise BenchError("the moto server did not start")

    def reset(self) -> None:
        """Empty state, then the bucket and the Glue database."""
        import boto3  # noqa: PLC0415

        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        ).close()
        kwargs = {
            "endpoint_url": self.endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        boto3.client("s3", **kwargs).create_bucket(Bucket=BUCKET)
        boto3.client("glue", **kwargs).create_database(DatabaseInput={"Name": "panorama"})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# --- the benchmark ---------------------------------------------------------------------------


def baseline_code(rev: str) -> Path:
    """A clean copy of another revision (git archive), to run side by side."""
    sha = subprocess.run(
        ["git", "rev-parse", rev], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    folder = BUILD / "baseline" / sha[:12]
    if not (folder / "panorama.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha], capture_output=True, check=True, cwd=ROOT
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def repetition(
    size: str,
    rep: int,
    counter: StatementCounter,
    dataset: dict[str, Any],
    moto: Moto | None,
    baseline: Path | None,
) -> list[Run]:
    folder = BUILD / size
    logs = folder / "logs" / f"rep{rep}"
    logs.mkdir(parents=True, exist_ok=True)
    database = f"bench_{size}"
    source = source_counts(database)
    settings = write_settings(size, folder / "local")
    runs = [run_floor("floor", size, counter, logs)]
    expected = sum(v for k, v in source.items() if k in {t["name"] for t in template_tables()})
    if runs[0].rows != expected:
        raise BenchError(f"floor: {runs[0].rows} rows dumped, {expected} in MySQL")

    setup_lake(settings, ROOT)
    full = run_tool("full", settings, ["--all", "--force"], counter, logs)
    check_local("full", settings, source)
    runs.append(full)
    if PARQUET:
        course = sorted(source["by_course"])[0]
        parquet = write_settings(size, folder / "parquet", file_format="parquet")
        setup_lake(parquet, ROOT)
        runs.append(run_tool("full parquet", parquet, ["--all", "--force"], counter, logs))
        check_local("full parquet", parquet, source)
        runs.extend(run_queries("csv", settings, course))
        runs.extend(run_queries("parquet", parquet, course))
    if baseline is not None:
        old = write_settings(size, folder / "baseline")
        setup_lake(old, baseline)
        runs.append(run_tool("full baseline", old, ["--all", "--force"], counter, logs, baseline))
        check_local("full baseline", old, source)

    touched_at = touch(database)
    runs.append(run_floor("incr floor", size, counter, logs, changed_in=source["touched_in"]))
    runs.append(run_tool("incremental", settings, ["--all"], counter, logs))
    check_local("incremental", settings, source, touched_at, dataset["touched_rows"])
    if baseline is not None:
        runs.append(run_tool("incremental baseline", old, ["--all"], counter, logs, baseline))
        check_local("incremental baseline", old, source, touched_at, dataset["touched_rows"])

    if moto is not None:
        moto.reset()
        aws = write_settings(size, folder / "aws", moto.endpoint)
        result = subprocess.run(
            panorama(aws, "create-datalake-tables", "--all"),
            capture_output=True,
            text=True,
            env=tool_env(),
            cwd=ROOT,
        )
        if result.returncode != 0:
            raise BenchError(
                f"create-datalake-tables on moto failed:\n{result.stdout}\n{result.stderr}"
            )
        run = run_tool("full aws", aws, ["--all", "--force"], counter, logs)
        check_aws("full aws", moto.endpoint, full)
        runs.append(run)
    for run in runs:
        print(
            f"  {size} rep {rep}: {run.name:<21} {run.wall:7.2f} s  {run.max_rss / 2**20:6.1f} MiB  {run.statements:4d} statements",
            flush=True,
        )
    return runs


def median_runs(runs: list[Run]) -> dict[str, dict[str, Any]]:
    names = list(dict.fromkeys(r.name for r in runs))
    out = {}
    for name in names:
        same = [r for r in runs if r.name == name]
        out[name] = {
            "wall": statistics.median(r.wall for r in same),
            "wall_min": min(r.wall for r in same),
            "wall_max": max(r.wall for r in same),
            "max_rss": statistics.median(r.max_rss for r in same),
            "tree_pss": statistics.median(r.tree_pss for r in same),
            "statements": statistics.median(r.statements for r in same),
            "questions": statistics.median(r.questions for r in same),
            "rows": same[0].rows,
            "files": same[0].files,
            "bytes": same[0].bytes,
        }
    return out


def print_table(size: str, dataset: dict[str, Any], medians: dict[str, dict[str, Any]]) -> None:
    spec = dataset["spec"]
    print(
        f"\nsize {size}: {spec['studentmodule_rows']:,} {BIG} rows, {spec['courses']} courses, "
        f"{spec['users']:,} users; incremental touches {dataset['touched_rows']:,} rows in "
        f"{dataset['touched_courses']} courses (medians of {REPEAT})"
    )
    header = f"  {'run':<21} {'wall s':>7} {'(min-max)':>13} {'vs':>12} {'rows/s':>10} {'RSS MiB':>8} {'PSS MiB':>8} {'SQL':>5} {'files':>6} {'MB':>7}"
    print(header)
    floor = medians["floor"]["wall"]
    for name, m in medians.items():
        if name == "floor" or name.startswith("q "):
            versus = ""
        elif name.startswith("incremental"):
            base = medians["full baseline" if "baseline" in name else "full"]["wall"]
            versus = f"{m['wall'] / base:.2f} full"
        elif name == "incr floor":
            versus = f"{m['wall'] / floor:.2f} floor"
        else:
            versus = f"{m['wall'] / floor:.2f} floor"
        print(
            f"  {name:<21} {m['wall']:7.2f} {m['wall_min']:6.2f}-{m['wall_max']:<6.2f} {versus:>12} "
            f"{m['rows'] / m['wall']:>10,.0f} {m['max_rss'] / 2**20:8.1f} {m['tree_pss'] / 2**20:8.1f} "
            f"{m['statements']:5.0f} {m['files']:6d} {m['bytes'] / 1e6:7.1f}"
        )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    sizes = results["sizes"]
    big = "b" if "b" in sizes else sorted(sizes)[-1]
    m = sizes[big]["medians"]
    tables = len(template_tables())
    checks = [
        ("full run / floor", m["full"]["wall"] / m["floor"]["wall"], TARGET_FULL_VS_FLOOR, "x"),
        ("peak RSS, largest process (MiB)", m["full"]["max_rss"] / 2**20, TARGET_RSS_MIB, ""),
        ("peak PSS, all processes (MiB)", m["full"]["tree_pss"] / 2**20, TARGET_RSS_MIB, ""),
        (
            "SQL statements, full run",
            m["full"]["statements"],
            STATEMENTS_PER_TABLE * tables + STATEMENTS_CONSTANT,
            "",
        ),
        (
            "incremental / full",
            m["incremental"]["wall"] / m["full"]["wall"],
            TARGET_INCREMENTAL_VS_FULL,
            "x",
        ),
    ]
    if "a" in sizes and big != "a":
        small = sizes["a"]["medians"]["full"]["max_rss"]
        checks.insert(
            2, (f"peak RSS {big} vs a", m["full"]["max_rss"] / small - 1, TARGET_RSS_GROWTH, "%")
        )
    out = []
    for name, value, limit, unit in checks:
        out.append(
            {
                "target": name,
                "size": big,
                "value": value,
                "limit": limit,
                "met": value <= limit,
                "unit": unit,
            }
        )
    if "full parquet" in m:
        out.extend(format_targets(m, big))
    # Context for the incremental target: the same ratio for the raw dumps.
    out.append(
        {
            "target": "incr floor / floor (context)",
            "size": big,
            "value": m["incr floor"]["wall"] / m["floor"]["wall"],
            "limit": None,
            "met": None,
            "unit": "x",
        }
    )
    return out


def show(value: float, unit: str) -> str:
    return f"{value:+.0%}" if unit == "%" else f"{value:.2f}" if unit == "x" else f"{value:.1f}"


REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
# CSV vs Parquet side by side (BENCH_PARQUET=0 skips the Parquet lake and the queries).
PARQUET = os.environ.get("BENCH_PARQUET", "1") != "0"
TARGET_PARQUET_FULL_VS_CSV = 1.2


def format_targets(m: dict[str, dict[str, Any]], size: str) -> list[dict[str, Any]]:
    """Parquet against CSV, same data: smaller lake, faster queries, full run within 1.2x and
    memory within the bound."""
    checks = [
        ("parquet / csv lake bytes", m["full parquet"]["bytes"] / m["full"]["bytes"], 1.0),
        ("parquet / csv full run", m["full parquet"]["wall"] / m["full"]["wall"], 1.2),
        ("parquet peak RSS (MiB)", m["full parquet"]["max_rss"] / 2**20, TARGET_RSS_MIB),
        ("parquet / csv peak RSS", m["full parquet"]["max_rss"] / m["full"]["max_rss"], None),
    ]
    for name in QUERIES:
        csv, parquet = m[f"q {name} csv"], m[f"q {name} parquet"]
        checks.append((f"{name}: time p/c", parquet["wall"] / csv["wall"], 1.0))
        checks.append((f"{name}: read p/c", parquet["bytes"] / csv["bytes"], None))
    return [
        {
            "target": name,
            "size": size,
            "value": value,
            "limit": limit,
            "met": None if limit is None else value <= limit,
            "unit": "" if "MiB" in name else "x",
        }
        for name, value, limit in checks
    ]


def main() -> int:
    sizes = [s.strip() for s in os.environ.get("BENCH_SIZES", "a,b").split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or REPEAT < 1:
        print(
            f"BENCH_SIZES must list sizes of {sorted(SIZES)}, BENCH_REPEAT be >= 1", file=sys.stderr
        )
        return 2
    baseline_rev = os.environ.get("BENCH_BASELINE")
    started = time.monotonic()
    BUILD.mkdir(parents=True, exist_ok=True)
    root = root_connection()
    setup_server(root)
    counter = StatementCounter(root)
    datasets = {size: ensure_dataset(size, root) for size in sizes}
    built = time.monotonic() - started
    baseline = baseline_code(baseline_rev) if baseline_rev else None
    moto = Moto() if os.environ.get("BENCH_AWS", "1") != "0" else None
    runs: dict[str, list[Run]] = {size: [] for size in sizes}
    try:
        for rep in range(1, REPEAT + 1):
            for size in sizes:
                runs[size].extend(repetition(size, rep, counter, datasets[size], moto, baseline))
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if moto is not None:
            moto.stop()
    results: dict[str, Any] = {
        "repeat": REPEAT,
        "baseline": baseline_rev,
        "cpus": os.cpu_count(),
        "dataset_build_seconds": round(built, 1),
        "sizes": {
            size: {
                "dataset": datasets[size],
                "medians": median_runs(runs[size]),
                "runs": [asdict(r) for r in runs[size]],
            }
            for size in sizes
        },
    }
    for size in sizes:
        print_table(size, datasets[size], results["sizes"][size]["medians"])
    results["targets"] = targets(results)
    print(f"\ntargets (size {results['targets'][0]['size']}, medians of one run):")
    for t in results["targets"]:
        verdict = "" if t["met"] is None else ("met" if t["met"] else "NOT MET")
        limit = "" if t["limit"] is None else f"<= {show(t['limit'], t['unit'])}"
        print(f"  {t['target']:<34} {show(t['value'], t['unit']):>8} {limit:>10}  {verdict}")
    results["seconds"] = round(time.monotonic() - started, 1)
    (BUILD / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{BUILD.relative_to(ROOT)}/results.json written; {results['seconds']:.0f} s in all.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
