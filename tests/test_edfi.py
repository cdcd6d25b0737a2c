"""Ed-Fi ODS/API datasource against the project's loopback emulator -> local datalake (DuckDB)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from panorama_elt.cli import main
from panorama_elt.datasources.edfi_api import EdfiDatasource
from panorama_elt.errors import SourceError
from panorama_elt.settings import TableSettings, parse_settings
from panorama_elt.synthetic import edfi_data
from panorama_elt.synthetic.edfi_api import EdfiEmulator
from tests.conftest import local_datalake, write_settings

SECRET = "s3cr3t-Edfi-client-secret"
RESOURCES = ["students", "studentSchoolAssociations", "gradeLevelDescriptors"]


@pytest.fixture
def api() -> Iterator[EdfiEmulator]:
    """An Ed-Fi 6.1 emulator loaded with the synthetic dataset."""
    with EdfiEmulator(version="6.1", client_secret=SECRET) as emulator:
        emulator.load()
        yield emulator


def edfi_source(api: EdfiEmulator, tables: list[Any], **extra: Any) -> dict[str, Any]:
    """An edfi_api datasource entry pointing at the emulator."""
    return {
        "type": "edfi_api",
        "name": "edfi",
        "base_url": api.url,
        "client_id": api.client_id,
        "client_secret": api.client_secret,
        "page_size": 7,
        "backoff_factor": 0,
        "tables": [{"name": t} if isinstance(t, str) else t for t in tables],
        **extra,
    }


def setup(tmp_path: Path, api: EdfiEmulator, tables: list[Any] = RESOURCES, **extra: Any) -> Path:
    """Settings file, raw tables and views for the emulator's resources."""
    settings = write_settings(
        tmp_path / "settings.yaml",
        local_datalake(tmp_path / "lake", base_prefix="edfi"),
        [edfi_source(api, tables, **extra)],
    )
    for command in ("create-datalake-tables", "create-datalake-views"):
        assert cli(settings, command, "--all").exit_code == 0
    return settings


def cli(settings: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--settings", str(settings), *args])


def load(settings: Path, tmp_path: Path, *args: str) -> dict[str, dict[str, Any]]:
    """extract-and-load --all; the summary per table (the run must succeed)."""
    results = tmp_path / "results.json"
    result = cli(settings, "extract-and-load", "--all", "--results-file", str(results), *args)
    assert result.exit_code == 0, result.output
    return {t["table"]: t for t in json.loads(results.read_text())["tables"]}


def view(tmp_path: Path, name: str, columns: str = "id, doc") -> list[tuple[Any, ...]]:
    db = duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True)
    try:
        return db.execute(f"SELECT {columns} FROM {name}").fetchall()
    finally:
        db.close()


def current(tmp_path: Path, table: str) -> dict[str, dict[str, Any]]:
    """The current-state view of a resource as {id: record}, checking each doc's key order."""
    rows = view(tmp_path, f"edfi_table_{table}")
    records = {row[0]: json.loads(row[1]) for row in rows}
    assert len(records) == len(rows), "an id appears twice in the current view"
    return records


def store(api: EdfiEmulator, resource: str) -> dict[str, dict[str, Any]]:
    """What the emulator holds, as a client reading it would see it."""
    return {item["id"]: item for item in api.items(resource)}


def assert_same(tmp_path: Path, api: EdfiEmulator, resource: str, table: str) -> None:
    lake, expected = current(tmp_path, table), store(api, resource)
    assert lake == expected
    # Exactly as the API returned it: same key order too.
    assert [list(lake[i]) for i in sorted(lake)] == [list(expected[i]) for i in sorted(expected)]


def test_full_then_changes_skipped_run_and_incremental(tmp_path: Path, api: EdfiEmulator) -> None:
    settings = setup(tmp_path, api, get_key_changes=True)
    first = load(settings, tmp_path)
    assert first["students"]["mode"] == "full" and first["students"]["rows"] == 40
    for resource, table in [
        ("students", "students"),
        ("studentSchoolAssociations", "student_school_associations"),
        ("gradeLevelDescriptors", "grade_level_descriptors"),
    ]:
        assert_same(tmp_path, api, resource, table)

    students = api.items("students")
    enrollments = api.items("studentSchoolAssociations")
    # Changes: an insert, an update, a delete, and a key change (entry date corrected).
    api.upsert(
        "ed-fi",
        "students",
        {**edfi_data.generate()["students"][0], "studentUniqueId": "X1", "firstName": "New"},
    )
    api.upsert("ed-fi", "students", {**_body(students[1]), "firstName": 'Renamed, "again"'})
    api.delete("ed-fi", "students", students[2]["id"])
    moved = _body(enrollments[0])
    api.replace(
        "ed-fi",
        "studentSchoolAssociations",
        enrollments[0]["id"],
        {**moved, "entryDate": "2023-09-05"},
    )
    del api.requests[:]
    second = load(settings, tmp_path)
    asked = [p for m, p in api.requests if p.endswith("/availableChangeVersions")]
    assert len(asked) == 1  # once per run, not once per table
    state = tmp_path / "lake/edfi/_panorama_state/edfi_raw_students/lms=lms.example.com/state.json"
    assert json.loads(state.read_text())["mark"] == str(api.store.change_version)
    assert second["students"]["mode"] == "incremental"
    assert second["students"]["rows"] == 2  # the insert and the update, not the 40 others
    assert second["students_deletes"]["rows"] == 1
    changes = view(tmp_path, "edfi_table_student_school_associations_key_changes", "id, doc")
    assert [(i, json.loads(d)["newKeyValues"]["entryDate"]) for i, d in changes] == [
        (enrollments[0]["id"], "2023-09-05")
    ]
    assert_same(tmp_path, api, "students", "students")
    assert_same(tmp_path, api, "studentSchoolAssociations", "student_school_associations")

    # A skipped run: two rounds of changes, then one incremental run catches both up.
    api.delete("ed-fi", "studentSchoolAssociations", enrollments[1]["id"])
    api.upsert("ed-fi", "students", {**_body(students[3]), "lastSurname": "Round one"})
    api.upsert("ed-fi", "students", {**_body(students[3]), "lastSurname": "Round two"})
    api.delete("ed-fi", "students", students[4]["id"])
    third = load(settings, tmp_path)
    assert third["students"]["rows"] == 1 and third["students_deletes"]["rows"] == 1
    assert_same(tmp_path, api, "students", "students")
    assert_same(tmp_path, api, "studentSchoolAssociations", "student_school_associations")
    # Typed columns, checked against the record's own JSON.
    typed = view(
        tmp_path,
        "edfi_table_student_school_associations",
        "id, entry_date, school_id, student_unique_id, full_time_equivalency, primary_school, last_modified_date",
    )
    by_id = {row[0]: row[1:] for row in typed}
    for item in api.items("studentSchoolAssociations"):
        assert by_id[item["id"]] == (
            date.fromisoformat(item["entryDate"]),
            item["schoolReference"]["schoolId"],
            item["studentReference"]["studentUniqueId"],
            item["fullTimeEquivalency"],
            item["primarySchool"],
            datetime.strptime(item["_lastModifiedDate"], "%Y-%m-%dT%H:%M:%S.%fZ"),
        )
    # The deleted-student list is what the API reported.
    gone = {row[0] for row in view(tmp_path, "edfi_table_students_deletes", "id")}
    assert gone == {students[2]["id"], students[4]["id"]}


def test_force_is_a_new_baseline(tmp_path: Path, api: EdfiEmulator) -> None:
    settings = setup(tmp_path, api, ["students"])
    load(settings, tmp_path)
    api.upsert("ed-fi", "students", {**_body(api.items("students")[0]), "firstName": "Later"})
    load(settings, tmp_path)
    folder = tmp_path / "lake" / "edfi" / "students"
    assert len(list(folder.rglob("*.csv"))) == 2  # one file per pull
    forced = load(settings, tmp_path, "--force")
    assert forced["students"]["mode"] == "full" and forced["students"]["rows"] == 40
    assert forced["students"]["partitions_removed"] == 1
    assert len(list(folder.rglob("*.csv"))) == 1
    assert_same(tmp_path, api, "students", "students")


def test_write_between_pages_forward_paging_loses_a_row_ours_none(tmp_path: Path) -> None:
    with EdfiEmulator(version="6.1", client_secret=SECRET) as api:
        for n in range(10):
            api.upsert(
                "ed-fi",
                "students",
                {
                    "studentUniqueId": f"S{n}",
                    "firstName": "A",
                    "lastSurname": "B",
                    "birthDate": "2010-01-01",
                },
            )
        ids = sorted(api.store.records["ed-fi/students"])
        writes: list[str] = []

        def write_once(resource: str, offset: int) -> None:
            # Between this page and the next: the 2nd record (in id order) is updated, so it
            # leaves the change window and every record after it moves down one place.
            api.page_hooks.clear()
            writes.append(f"Updated {len(writes) + 1}")
            record = api.store.records["ed-fi/students"][ids[1]]
            api.upsert("ed-fi", "students", {**record.body, "firstName": writes[-1]})

        # A forward-offset client (what lightbeam fetch and most scripts do), two runs.
        newest = api.store.change_version
        api.page_hooks.append(write_once)
        seen = forward_pull(api, 0, newest, 3)
        seen |= forward_pull(api, newest + 1, api.store.change_version, 3)
        lost = set(ids) - seen
        assert lost == {ids[3]}  # the record that slid onto the page already read

        # Ours, under the same fault, then the next run.
        settings = setup(tmp_path, api, ["students"], page_size=3)
        api.page_hooks.append(write_once)
        load(settings, tmp_path)
        pulled = {row[0] for row in view(tmp_path, "edfi_raw_students", "id")}
        assert pulled == set(ids) - {ids[1]}  # the updated one is past this pull's window
        load(settings, tmp_path)
        assert_same(tmp_path, api, "students", "students")
        assert current(tmp_path, "students")[ids[1]]["firstName"] == "Updated 2"


def forward_pull(api: EdfiEmulator, low: int, high: int, limit: int) -> set[str]:
    """Ids a naive client gets by paging one change window forward by offset."""
    token = _token(api)
    ids: set[str] = set()
    offset = 0
    while True:
        url = (
            f"{api.url}/data/v3/ed-fi/students?minChangeVersion={low}&maxChangeVersion={high}"
            f"&offset={offset}&limit={limit}"
        )
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request) as response:
            page = json.loads(response.read())
        ids |= {r["id"] for r in page}
        if len(page) < limit:
            return ids
        offset += limit


def _token(api: EdfiEmulator) -> str:
    request = urllib.request.Request(
        f"{api.url}/oauth/token",
        data=json.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": api.client_id,
                "client_secret": api.client_secret,
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return str(json.loads(response.read())["access_token"])


def _body(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("id", "_etag", "_lastModifiedDate")}


@pytest.mark.parametrize(
    ("version", "shape"),
    [
        ("5.3", {"mode": "year_specific", "year": 2024}),
        ("6.1", {"mode": "instance_year_specific", "year": 2025, "instance_code": "district9"}),
        ("7.3", {"mode": "year_specific", "year": 2026, "tenant_code": "tenant1"}),
    ],
)
def test_url_shapes_and_version_differences(
    tmp_path: Path, version: str, shape: dict[str, Any]
) -> None:
    with EdfiEmulator(version=version, client_secret=SECRET, **shape) as api:
        api.load()
        settings = setup(tmp_path, api, ["students", "studentSchoolAssociations"], **shape)
        load(settings, tmp_path)
        victim = api.items("students")[5]
        api.delete("ed-fi", "students", victim["id"])
        # 7.3: deleted and re-created with the same natural key: not in /deletes, new id.
        api.upsert("ed-fi", "students", {**_body(victim), "firstName": "Back"})
        load(settings, tmp_path)
        assert_same(tmp_path, api, "students", "students")
        assert_same(tmp_path, api, "studentSchoolAssociations", "student_school_associations")
        partitions = view(tmp_path, "edfi_table_students", "DISTINCT api_year")
        assert partitions == [(shape["year"],)]
        if "tenant_code" in shape:
            assert view(tmp_path, "edfi_table_students", "DISTINCT tenant_code") == [("tenant1",)]


def test_retries_throttling_server_errors_resets_and_a_revoked_token(
    tmp_path: Path, api: EdfiEmulator
) -> None:
    settings = setup(tmp_path, api, ["students"])
    api.fail("/ed-fi/students", status=429, retry_after=0)
    api.fail("/ed-fi/students", status=503)
    api.fail("/ed-fi/students", reset=True)
    api.fail("/availableChangeVersions", status=500)
    revoked = []

    def revoke(resource: str, offset: int) -> None:
        if not revoked:
            revoked.append(offset)
            api.revoke_tokens()

    api.page_hooks.append(revoke)
    load(settings, tmp_path)
    assert_same(tmp_path, api, "students", "students")
    assert all(f.times == 0 for f in api.faults)


def datasource(api: EdfiEmulator, **extra: Any) -> tuple[EdfiDatasource, TableSettings]:
    """Our datasource for the emulator's students, without a settings file."""
    raw = {
        "datalake": {"type": "local", "path": "/tmp/unused"},
        "datasources": [edfi_source(api, ["students"], **extra)],
    }
    settings = parse_settings(raw, Path("/tmp/s.yaml"))
    return EdfiDatasource(settings.datasources[0]), settings.tables[0]


def test_retry_after_is_honoured(api: EdfiEmulator) -> None:
    source, table = datasource(api, backoff_factor=0.25)
    waits: list[float] = []
    source.client.sleep = waits.append
    api.fail("/ed-fi/students", status=429, retry_after=7)
    api.fail("/ed-fi/students", status=502)
    extraction = source.extract(table, force=True, mark=None)
    rows = [row for batch in extraction.batches or () for row in batch]
    assert len(rows) == 40
    assert waits == [7.0, 0.5]  # Retry-After first, then backoff_factor * 2**attempt


def test_token_is_renewed_before_it_expires(api: EdfiEmulator) -> None:
    api.token_seconds = 600
    source, table = datasource(api)
    now = [1000.0]
    source.client.clock = lambda: now[0]

    def pull() -> int:
        extraction = source.extract(table, force=True, mark=None)
        assert sum(len(b) for b in extraction.batches or ()) == 40
        return sum(1 for method, path in api.requests if path == "/oauth/token")

    assert pull() == 1
    now[0] += 479  # still more than two minutes left
    assert pull() == 1
    now[0] += 2  # less than two minutes left: a new token before the old one is refused
    assert pull() == 2


def test_pages_stream_into_the_writer(api: EdfiEmulator) -> None:
    source, table = datasource(api)  # 40 students, 7 a page: 6 pages
    batches = iter(source.extract(table, force=True, mark=None).batches or ())
    assert len(next(batches)) == 40 - 35  # the last page comes first
    pages = [p for m, p in api.requests if "/ed-fi/students?" in p and "totalCount" not in p]
    assert len(pages) == 1  # nothing else was read ahead
    assert sum(len(b) for b in batches) == 35


def test_emulator_token_endpoint(api: EdfiEmulator) -> None:
    """Form-body credentials work, a wrong secret is 401, an expired token is refused."""
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": api.client_id, "client_secret": SECRET}
    ).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{api.url}/oauth/token", data=form)) as r:
        answer = json.loads(r.read())
    assert answer["token_type"] == "bearer" and answer["expires_in"] == api.token_seconds
    wrong = form.replace(SECRET.encode(), b"nope")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{api.url}/oauth/token", data=wrong))
    assert refused.value.code == 401
    refused.value.close()
    api.token_seconds = 0
    token = _token(api)
    request = urllib.request.Request(
        f"{api.url}/data/v3/ed-fi/students", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as expired:
        urllib.request.urlopen(request)
    assert expired.value.code == 401
    expired.value.close()


def test_no_change_queries_means_full_pulls(tmp_path: Path) -> None:
    with EdfiEmulator(version="6.1", client_secret=SECRET, change_queries=False) as api:
        api.load()
        settings = setup(tmp_path, api, ["students"])
        load(settings, tmp_path)
        api.delete("ed-fi", "students", api.items("students")[0]["id"])
        again = load(settings, tmp_path)
        assert again["students"]["mode"] == "full" and again["students"]["rows"] == 39
        assert_same(tmp_path, api, "students", "students")


# Errors: one line, the table or host named, exit code 1 as for MySQL tables, no secret.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_failure(result: Any, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert SECRET not in result.output
    for text in expected:
        assert text in result.output, result.output


@pytest.mark.parametrize("command", [["extract-and-load", "--all"], ["test-connections"]])
def test_bad_credentials(tmp_path: Path, api: EdfiEmulator, command: list[str]) -> None:
    settings = setup(tmp_path, api, ["students"])
    text = settings.read_text().replace(SECRET, SECRET + "-wrong")
    settings.write_text(text)
    result = cli(settings, "--debug", *command)
    _check_failure(result, "refused the credentials (HTTP 401): check client_id and client_secret")


@pytest.mark.parametrize("command", [["extract-and-load", "--all"], ["test-connections"]])
def test_unreachable_host(tmp_path: Path, api: EdfiEmulator, command: list[str]) -> None:
    settings = setup(tmp_path, api, ["students"])
    port = _free_port()
    settings.write_text(settings.read_text().replace(api.url, f"http://127.0.0.1:{port}"))
    result = cli(settings, "--debug", *command)
    _check_failure(result, f"cannot reach 127.0.0.1:{port}")


def test_forbidden_resource_fails_that_table_only(tmp_path: Path, api: EdfiEmulator) -> None:
    settings = setup(tmp_path, api, ["students", "gradeLevelDescriptors"])
    api.forbidden.add("ed-fi/students")
    result = cli(settings, "extract-and-load", "--all")
    _check_failure(
        result,
        "HTTP 403",
        "claim set does not cover ed-fi/students",
        "2 of 3 tables failed: students, students_deletes",
    )
    assert len(current(tmp_path, "grade_level_descriptors")) == 4


def test_expired_and_future_change_versions_ask_for_force(
    tmp_path: Path, api: EdfiEmulator
) -> None:
    settings = setup(tmp_path, api, ["students"], fetch_deletes=False)
    load(settings, tmp_path)
    api.upsert("ed-fi", "students", {**_body(api.items("students")[0]), "firstName": "Z"})
    api.purge(api.store.change_version + 1)  # the ODS forgot the changes we have not read
    result = cli(settings, "extract-and-load", "--all")
    _check_failure(result, "older than the API's oldest available", "run with --force")
    load(settings, tmp_path, "--force")
    assert_same(tmp_path, api, "students", "students")
    # An ODS restored from an older backup: our mark is in its future.
    api.store.change_version = 5
    _check_failure(cli(settings, "extract-and-load", "--all"), "is newer than the API's newest (5)")


def test_set_tables_from_the_dependency_list(tmp_path: Path, api: EdfiEmulator) -> None:
    settings = setup(tmp_path, api, [{"name": "students", "page_size": 11}])
    result = cli(settings, "set-tables", "--datasource", "edfi", "-t", "student*,*Descriptors")
    assert result.exit_code == 0, result.output
    tables = yaml.safe_load(settings.read_text())["datasources"][0]["tables"]
    # Dependency order, as the API lists it; what an entry already had is kept.
    assert tables == [
        {"name": "gradeLevelDescriptors"},
        {"name": "attendanceEventCategoryDescriptors"},
        {"name": "students", "page_size": 11},
        {"name": "studentSchoolAssociations"},
        {"name": "studentSectionAttendanceEvents"},
    ]
    bad = cli(settings, "set-tables", "--datasource", "edfi", "-t", "staff*")
    assert bad.exit_code == 2 and "no resource of" in bad.output and "matches staff*" in bad.output


def test_settings_problems_name_their_keys(tmp_path: Path, api: EdfiEmulator) -> None:
    tables = ["students", "Bad-Name", {"name": "schools", "query_parameters": {"limit": 5}}]
    source = edfi_source(api, tables, mode="yearly", client_secret=None)
    settings = write_settings(tmp_path / "s.yaml", local_datalake(tmp_path / "lake"), [source])
    result = cli(settings, "test-connections")
    assert result.exit_code == 2
    for problem in (
        "datasources[0].mode: unknown mode 'yearly'",
        "datasources[0].client_secret: is required",
        "datasources[0].tables[1].name: 'Bad-Name' is not an Ed-Fi resource name",
        "datasources[0].tables[2].query_parameters: cannot set limit (the extraction pages",
    ):
        assert problem in result.output, result.output


def test_windows_and_reverse_offsets() -> None:
    from panorama_elt.datasources.edfi_api import change_windows, reverse_offsets

    assert change_windows(101, 250, 50) == [(101, 150), (151, 200), (201, 250)]
    assert change_windows(101, 251, 50) == [(101, 150), (151, 200), (201, 250), (251, 251)]
    assert change_windows(5, 5, 50) == [(5, 5)]
    assert change_windows(6, 5, 50) == []
    assert reverse_offsets(10, 3) == [9, 6, 3, 0]
    assert reverse_offsets(9, 3) == [6, 3, 0]
    assert reverse_offsets(1, 500) == [0]
    assert reverse_offsets(0, 500) == []


def test_incremental_pull_is_stepped_in_windows(tmp_path: Path, api: EdfiEmulator) -> None:
    settings = setup(tmp_path, api, ["students"], change_version_step_size=3, fetch_deletes=False)
    load(settings, tmp_path)
    start = api.store.change_version
    students = api.items("students")
    for n in range(7):  # seven changes: change versions start+1 .. start+7
        api.upsert("ed-fi", "students", {**_body(students[n]), "middleName": f"M{n}"})
    del api.requests[:]
    assert load(settings, tmp_path)["students"]["rows"] == 7
    counted = [p for m, p in api.requests if "totalCount=true" in p]
    assert counted == [
        f"/data/v3/ed-fi/students?minChangeVersion={low}&maxChangeVersion={high}&limit=0&totalCount=true"
        for low, high in [(start + 1, start + 3), (start + 4, start + 6), (start + 7, start + 7)]
    ]
    assert_same(tmp_path, api, "students", "students")


def test_an_unreachable_host_is_retried_once_per_run(api: EdfiEmulator) -> None:
    source, table = datasource(api, num_retries=3)
    waits: list[float] = []
    source.client.sleep = waits.append
    api.stop()  # nothing listens there any more
    for _ in range(2):  # two tables of the same run
        with pytest.raises(SourceError, match=r"cannot reach 127\.0\.0\.1:\d+: .*refused"):
            source.extract(table, force=True, mark=None)
    assert len(waits) == 3  # the first table waited through the retries, the second did not


def test_key_changes_on_5_3_fail_with_a_hint(tmp_path: Path) -> None:
    with EdfiEmulator(version="5.3", client_secret=SECRET) as api:
        api.load()
        settings = setup(tmp_path, api, ["students"], get_key_changes=True)
        result = cli(settings, "extract-and-load", "--all")
        _check_failure(
            result, "1 of 3 tables failed: students_key_changes", "set get_key_changes: false"
        )
        assert len(current(tmp_path, "students")) == 40
