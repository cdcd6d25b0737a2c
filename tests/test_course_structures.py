"""Open edX course structures: MongoDB (mongomock) and the MySQL course index -> rows -> DuckDB."""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import mongomock
import pymongo
import pytest
import yaml
from bson import ObjectId
from bson.decimal128 import Decimal128
from click.testing import CliRunner

from panorama_elt.cli import main
from panorama_elt.datasources import course_blocks as cb
from panorama_elt.datasources import openedx_course_structures as cs
from panorama_elt.datasources.base import Extraction
from panorama_elt.errors import SettingsError, SourceError
from panorama_elt.settings import DatasourceSettings, FieldSettings, TableSettings, parse_settings
from panorama_elt.synthetic import modulestore
from panorama_elt.synthetic.modulestore import Course, CourseBuilder, Modulestore
from tests.conftest import TEMPLATE, connect, local_datalake, mysql_source, write_settings

COLUMNS = [
    "module_location",
    "course_id",
    "organization",
    "course_code",
    "course_edition",
    "parent",
    "block_type",
    "block_id",
    "display_name",
    "course_name",
    "chapter",
    "sequential",
    "vertical",
    "library",
    "component",
    "weight",
    "block_order",
    "section_number",
    "subsection_number",
    "unit_number",
    "graded",
    "format",
    "due",
    "start",
    "visible_to_staff_only",
    "hide_from_toc",
    "published_version",
    "published_on",
]
ORDER = COLUMNS.index("block_order")
CONTAINERS = {"course", "chapter", "sequential", "vertical", "library_content"}
MONGO_HOST = "mongo.example.com"
LMS = "lms.example.com"
# When modulestore.write dates the first course's structures (BSON dates keep milliseconds).
FIRST_EDITED_ON = "2024-01-15 09:30:00.123000"


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> mongomock.MongoClient:
    """A mongomock client that every CourseStructuresDatasource of the test connects to."""
    mock = mongomock.MongoClient()
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def factory(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return mock

    monkeypatch.setattr(cs, "mongo_client_factory", factory)
    mock.factory_calls = calls
    return mock


@pytest.fixture
def store(client: mongomock.MongoClient) -> Modulestore:
    return modulestore.generate(client["edxapp"], courses=3, seed=7)


def source_entry(name: str = "openedx_course_structures", **extra: Any) -> dict[str, Any]:
    fields = [{"name": c, "type": "varchar"} for c in COLUMNS]
    return {
        "type": "openedx_course_structures",
        "name": name,
        "mongodb_host": MONGO_HOST,
        "mongodb_database": "edxapp",
        "tables": [{"name": "course_structures", "fields": fields}],
        **extra,
    }


def datasource_settings(tmp_path: Path, **extra: Any) -> DatasourceSettings:
    raw = {"datalake": local_datalake(tmp_path / "lake"), "datasources": [source_entry(**extra)]}
    return parse_settings(raw, tmp_path / "settings.yaml").datasources[0]


def consume(extraction: Extraction) -> list[tuple[Any, ...]]:
    """Every row of an extraction's batches, checking the batches are lists of <= 1000 rows."""
    assert extraction.batches is not None and not extraction.as_bytes
    rows: list[tuple[Any, ...]] = []
    for batch in extraction.batches:
        assert isinstance(batch, list) and 0 < len(batch) <= 1000
        rows.extend(tuple(row) for row in batch)
    return rows


def extract(source: cs.CourseStructuresDatasource, table: TableSettings) -> list[tuple[Any, ...]]:
    extraction = source.extract(table, force=False, mark=None)
    assert extraction.full and extraction.mark is None and not extraction.removed
    return consume(extraction)


def all_rows(settings: DatasourceSettings) -> list[tuple[Any, ...]]:
    source = cs.CourseStructuresDatasource(settings)
    try:
        return extract(source, settings.tables[0])
    finally:
        source.close()


def location(course: Course, key: tuple[str, str]) -> str:
    if key[0] == "course":
        return course.course_id
    return f"block-v1:{course.org}+{course.course}+{course.run}+type@{key[0]}+block@{key[1]}"


def expected_rows(courses: list[Course]) -> list[tuple[Any, ...]]:
    """Rows without block_order, from what the generator recorded while building each tree."""
    rows = []
    for course in courses:
        assert course.edited_on is not None
        # BSON dates keep milliseconds.
        when = course.edited_on.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "000"
        for block in course.blocks.values():
            e = block.expected
            leaf = not e.orphan and block.block_type not in CONTAINERS and not block.children
            rows.append(
                (
                    location(course, block.key),
                    course.course_id,
                    course.org,
                    course.course,
                    course.run,
                    None if e.parent is None else location(course, e.parent),
                    block.block_type,
                    block.block_id,
                    block.display_name,
                    e.course_name,
                    e.chapter,
                    e.sequential,
                    e.vertical,
                    e.library,
                    block.display_name if leaf else None,
                    e.weight,
                    *levels(e.numbers),
                    e.graded,
                    e.format,
                    e.due,
                    e.start,
                    e.visible_to_staff_only,
                    e.hide_from_toc,
                    str(course.published),
                    when,
                )
            )
    return rows


def levels(numbers: str | None) -> tuple[str | None, ...]:
    """section_number, subsection_number, unit_number of a block numbered 's:ss:u'."""
    if numbers is None:
        return (None, None, None)
    s, ss, u = numbers.split(":")
    return (f"{s}:0:0", f"{s}:{ss}:0", numbers)


def without_order(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [r[:ORDER] + r[ORDER + 1 :] for r in rows]


def assert_same_rows(expected: list[tuple[Any, ...]], actual: list[tuple[Any, ...]]) -> None:
    assert len(actual) == len(expected)
    missing = [r for r in expected if r not in actual][:3]
    extra = [r for r in actual if r not in expected][:3]
    assert not missing and not extra, f"missing {missing}; unexpected {extra}"
    assert sorted(actual, key=repr) == sorted(expected, key=repr)


def assert_depth_first_order(course: Course, rows: list[tuple[Any, ...]]) -> None:
    """block_order is a depth-first walk in children order: a block comes right after its
    parent and the whole subtrees of its earlier siblings (sizes counted from parent links)."""
    mine = [r for r in rows if r[1] == course.course_id]
    reachable = {r[0]: r for r in mine if r[ORDER] is not None}
    assert sorted(int(r[ORDER]) for r in reachable.values()) == list(range(len(reachable)))
    assert all(r[ORDER] is None for r in mine if r[5] is None and r[6] != "course")
    kids: dict[str, list[str]] = {loc: [] for loc in reachable}
    for r in reachable.values():
        if r[5] is not None:
            kids[r[5]].append(r[0])

    def size(loc: str) -> int:
        total, todo = 0, [loc]
        while todo:
            total += 1
            todo.extend(kids[todo.pop()])
        return total

    for block in course.blocks.values():
        here = location(course, block.key)
        if here not in reachable:
            continue
        children = [location(course, k) for k in block.children]
        children = [c for i, c in enumerate(children) if c in kids[here] and c not in children[:i]]
        assert sorted(children) == sorted(kids[here])
        position = int(reachable[here][ORDER]) + 1
        for child in children:
            assert int(reachable[child][ORDER]) == position
            position += size(child)


class CountingCollection:
    """A collection whose find calls are recorded (filter and keyword arguments)."""

    def __init__(self, inner: Any, owner: CountingClient, name: str) -> None:
        self._inner = inner
        self._owner = owner
        self._name = name

    def find(self, *args: Any, **kwargs: Any) -> Any:
        query = args[0] if args else kwargs.get("filter")
        projection = args[1] if len(args) > 1 else kwargs.get("projection")
        self._owner.finds[self._name].append({"filter": query, "projection": projection, **kwargs})
        ids_only = projection == {"_id": 1}
        self._owner.log.append((self._name, len(query["_id"]["$in"]), ids_only))
        return self._inner.find(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountingClient:
    """Wraps a client so finds on structures and definitions are recorded, in order: (the
    collection, how many ids were asked for, whether only the ids were wanted)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.finds: dict[str, list[dict[str, Any]]] = {cs.STRUCTURES: [], cs.DEFINITIONS: []}
        self.log: list[tuple[str, int, bool]] = []

    def asked(self, collection: str, *, ids_only: bool = False) -> list[Any]:
        """Every id asked from ``collection`` (by the existence checks, or by the reads)."""
        return [
            oid
            for f in self.finds[collection]
            if (f["projection"] == {"_id": 1}) == ids_only
            for oid in f["filter"]["_id"]["$in"]
        ]

    def __getitem__(self, database: str) -> Any:
        outer = self

        class Database:
            def __getitem__(self, name: str) -> Any:
                collection = outer.inner[database][name]
                if name in outer.finds:
                    return CountingCollection(collection, outer, name)
                return collection

        return Database()

    def close(self) -> None:
        self.inner.close()


# --- pure functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "1"),
        (0, "0"),
        (2.5, "2.5"),
        (1.0, "1"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (1e-7, "0.0000001"),
        (1e20, "100000000000000000000"),
        (12345678901234567890, "12345678901234567890"),
        ("2.50", "2.5"),
        (" 3 ", "3"),
        (Decimal128("1.25"), "1.25"),
        (None, None),
        (True, None),
        ("", None),
        ("heavy", None),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_weight_text(value: Any, text: str | None) -> None:
    assert cb.number_text(value) == text


@pytest.mark.parametrize(
    ("xml", "count"),
    [
        (None, 0),
        ("", 0),
        ("<problem><p>no question</p></problem>", 0),
        ("<problem><choiceresponse><checkboxgroup/></choiceresponse></problem>", 1),
        ("<problem><stringresponse answer='a'/><stringresponse\nanswer='b'/></problem>", 2),
        ("<problem><choicetextresponse></choicetextresponse></problem>", 1),
        ("<problem><!-- <optionresponse/> --><optionresponse/></problem>", 1),
        ("<problem>&lt;customresponse&gt;<customresponsex/><CUSTOMRESPONSE/></problem>", 0),
        ("".join(f"<{t}>" for t in cb.RESPONSE_TAGS), len(cb.RESPONSE_TAGS)),
    ],
)
def test_count_responses(xml: str | None, count: int) -> None:
    assert cb.count_responses(xml) == count


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2024-02-01T12:00:00Z", "2024-02-01 12:00:00"),  # as Studio stores dates
        ("2024-02-01T14:30:00+02:00", "2024-02-01 12:30:00"),  # another zone: to UTC
        ("2024-02-01T12:00:00", "2024-02-01 12:00:00"),  # no zone: UTC
        ("2024-02-01T12:00:00.250000Z", "2024-02-01 12:00:00.250000"),
        (1706788800000, "2024-02-01 12:00:00"),  # epoch milliseconds
        (datetime(2024, 2, 1, 12, 0, 0, 5), "2024-02-01 12:00:00.000005"),  # a BSON date
        ("", None),
        ("next week", None),
        (None, None),
        (True, None),
        ([2024, 2, 1], None),
    ],
)
def test_date_text(value: Any, text: str | None) -> None:
    assert cb.date_text(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "1"), (False, "0"), ("true", "1"), ("True", "1"), ("false", "0"), ("yes", "0")]
    + [(None, "0"), (1, "1"), (0, "0")],
)
def test_boolean_text(value: Any, text: str) -> None:
    assert cb.boolean_text(value) == text


@pytest.mark.parametrize(
    "mark",
    [None, "", "not json", "[]", '{"other": 1}', '{"published_versions": {"c": 1}}'],
)
def test_an_unreadable_versions_mark_means_read_everything(mark: str | None) -> None:
    assert cs.versions_from_mark(mark) is None


def test_generator_response_types_are_the_datasource_ones() -> None:
    assert set(modulestore.RESPONSE_TYPES) == set(cb.RESPONSE_TAGS)


def test_client_arguments(tmp_path: Path) -> None:
    plain = datasource_settings(tmp_path).mongodb
    assert plain is not None
    args, kwargs = cs.client_arguments(plain)
    assert args == ()
    assert kwargs == {
        "host": MONGO_HOST,
        "port": 27017,
        "readPreference": "secondaryPreferred",
        "serverSelectionTimeoutMS": 10000,
        "connectTimeoutMS": 10000,
        "appname": "panorama-elt",
    }
    full = datasource_settings(
        tmp_path,
        mongodb_port=27018,
        mongodb_username="edxapp001",
        mongodb_password="pw",
        mongodb_replica_set="rs0",
        mongodb_tls=True,
        mongodb_timeout_seconds=3,
    ).mongodb
    assert full is not None
    _, kwargs = cs.client_arguments(full)
    assert kwargs["username"] == "edxapp001" and kwargs["password"] == "pw"
    assert kwargs["authSource"] == "edxapp"  # Open edX's default: its own database
    assert kwargs["replicaSet"] == "rs0" and kwargs["tls"] is True
    assert kwargs["serverSelectionTimeoutMS"] == kwargs["connectTimeoutMS"] == 3000
    admin = datasource_settings(tmp_path, mongodb_username="u", mongodb_auth_source="admin").mongodb
    assert admin is not None
    assert cs.client_arguments(admin)[1]["authSource"] == "admin"
    uri = "mongodb://u:s3cret@db1:27017,db2:27017/edxapp?replicaSet=rs0&authSource=admin"
    by_uri = datasource_settings(tmp_path, mongodb_uri=uri).mongodb
    assert by_uri is not None
    args, kwargs = cs.client_arguments(by_uri)
    assert args == (uri,) and "host" not in kwargs and "username" not in kwargs
    assert kwargs["readPreference"] == "secondaryPreferred"
    assert cs.public_address(by_uri) == "mongodb://db1:27017,db2:27017/edxapp"


def test_template_table_matches_the_datasource(tmp_path: Path) -> None:
    data = yaml.safe_load(TEMPLATE.read_text())
    entry = next(d for d in data["datasources"] if d["type"] == "openedx_course_structures")
    (table,) = entry["tables"]
    assert table["name"] == "course_structures"
    assert [f["name"] for f in table["fields"]] == COLUMNS == list(cs.COLUMNS)
    assert {f["name"]: f["type"] for f in table["fields"]}["weight"] == "double"
    source = cs.CourseStructuresDatasource(datasource_settings(tmp_path))
    described = source.describe(["course_structures", "other"])
    assert described == {"course_structures": [(f["name"], f["type"]) for f in table["fields"]]}


# --- rows ----------------------------------------------------------------------------------


def test_hand_built_course(tmp_path: Path, client: mongomock.MongoClient) -> None:
    b = CourseBuilder(
        random.Random(1),
        "OrgX",
        "T1",
        "2024",
        'Tiny, "course"',
        settings={"start": "2024-01-01T00:00:00Z"},
    )
    ch1 = b.add(b.root, "chapter", "Week 1", "ch1")
    homework = {"graded": True, "format": "Homework", "due": "2024-02-01T12:00:00Z"}
    s1 = b.add(ch1, "sequential", "Lesson\n1", "s1", settings=homework)
    v1 = b.add(s1, "vertical", "Unit 🎓", "v1")
    b.problem(v1, "Two parts", ["stringresponse", "multiplechoiceresponse"], block_id="p1")
    # Its own format is not what the grader uses: the subsection's is.
    b.problem(
        v1,
        "Weighted",
        ["stringresponse"],
        weight=(2.5, "2.5"),
        block_id="p2",
        settings={"format": "Lab"},
    )
    b.add(v1, "html", "Back\\slash", "h1")
    lib = b.add(v1, "library_content", "Bank", "lc1")
    b.problem(
        lib,
        "From the bank",
        ["numericalresponse"],
        weight=(1.0, "1"),
        block_id="p3",
        defaults={"visible_to_staff_only": True},  # copied from a library: its "defaults"
    )
    b.problem(v1, None, ["optionresponse"], definition_stored=False, block_id="p4")
    b.link(v1, s1)  # a cycle
    b.link(v1, ("problem", "ghost"))  # a child that names no block
    late = {"due": "2024-02-15T12:00:00Z", "visible_to_staff_only": True}
    v2 = b.add(s1, "vertical", "Unit B", "v2", settings=late)  # its own due date
    b.add(v2, "html", "Late note", "h2")
    s2 = b.add(ch1, "sequential", "Lesson 2", "s2", settings={"hide_from_toc": True})
    b.add(s2, "vertical", "Unit C", "v3")  # a unit with no components yet
    ch2 = b.add(b.root, "chapter", "Week 2", "ch2", settings={"start": "2024-03-01T00:00:00Z"})
    s3 = b.add(ch2, "sequential", "Exam", "s3", settings={"graded": True, "format": "Final Exam"})
    v4 = b.add(s3, "vertical", "Exam unit", "v4")
    b.problem(v4, "Final question", ["stringresponse"], block_id="p5", settings={"graded": False})
    b.orphan("html", "Lost", "o1", settings={"graded": True})
    course = b.build()
    modulestore.write(client["edxapp"], [course])

    c = "course-v1:OrgX+T1+2024"

    def at(kind: str, block: str) -> str:
        return f"block-v1:OrgX+T1+2024+type@{kind}+block@{block}"

    head = (c, "OrgX", "T1", "2024")
    name = 'Tiny, "course"'
    published = (str(course.published), FIRST_EDITED_ON)
    jan, mar, default_start = "2024-01-01 00:00:00", "2024-03-01 00:00:00", "2030-01-01 00:00:00"
    due1, due2 = "2024-02-01 12:00:00", "2024-02-15 12:00:00"
    # Per block: the original's 16 columns, then order, section/subsection/unit numbers,
    # graded, format, due, start, visible_to_staff_only, hide_from_toc, version, edited_on.
    in_s1 = ("1", "Homework", due1, jan, "0", "0")
    expected = [
        (c, *head, None, "course", "course", name, None, None, None, None, None, None, None)
        + ("0", "0:0:0", "0:0:0", "0:0:0", "0", None, None, jan, "0", "0"),
        (at("chapter", "ch1"), *head, c, "chapter", "ch1", "Week 1", name)
        + (None, None, None, None, None, None)
        + ("1", "1:0:0", "1:0:0", "1:0:0", "0", None, None, jan, "0", "0"),
        (at("sequential", "s1"), *head, at("chapter", "ch1"), "sequential", "s1", "Lesson\n1")
        + (name, "Week 1", None, None, None, None, None)
        + ("2", "1:0:0", "1:1:0", "1:1:0", *in_s1),
        (at("vertical", "v1"), *head, at("sequential", "s1"), "vertical", "v1", "Unit 🎓", name)
        + ("Week 1", "Lesson\n1", None, None, None, None)
        + ("3", "1:0:0", "1:1:0", "1:1:1", *in_s1),
        (at("problem", "p1"), *head, at("vertical", "v1"), "problem", "p1", "Two parts", name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, "Two parts", "2")
        + ("4", "1:0:0", "1:1:0", "1:1:1", *in_s1),
        (at("problem", "p2"), *head, at("vertical", "v1"), "problem", "p2", "Weighted", name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, "Weighted", "2.5")
        + ("5", "1:0:0", "1:1:0", "1:1:1", *in_s1),
        (at("html", "h1"), *head, at("vertical", "v1"), "html", "h1", "Back\\slash", name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, "Back\\slash", None)
        + ("6", "1:0:0", "1:1:0", "1:1:1", *in_s1),
        (at("library_content", "lc1"), *head, at("vertical", "v1"), "library_content", "lc1")
        + ("Bank", name, "Week 1", "Lesson\n1", "Unit 🎓", None, None, None)
        + ("7", "1:0:0", "1:1:0", "1:1:1", *in_s1),
        (at("problem", "p3"), *head, at("library_content", "lc1"), "problem", "p3")
        + ("From the bank", name, "Week 1", "Lesson\n1", "Unit 🎓", "Bank", "From the bank", "1")
        + ("8", "1:0:0", "1:1:0", "1:1:1", "1", "Homework", due1, jan, "1", "0"),
        (at("problem", "p4"), *head, at("vertical", "v1"), "problem", "p4", None, name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, None, None)
        + ("9", "1:0:0", "1:1:0", "1:1:1", *in_s1),
        (at("vertical", "v2"), *head, at("sequential", "s1"), "vertical", "v2", "Unit B", name)
        + ("Week 1", "Lesson\n1", None, None, None, None)
        + ("10", "1:0:0", "1:1:0", "1:1:2", "1", "Homework", due2, jan, "1", "0"),
        (at("html", "h2"), *head, at("vertical", "v2"), "html", "h2", "Late note", name)
        + ("Week 1", "Lesson\n1", "Unit B", None, "Late note", None)
        + ("11", "1:0:0", "1:1:0", "1:1:2", "1", "Homework", due2, jan, "1", "0"),
        (at("sequential", "s2"), *head, at("chapter", "ch1"), "sequential", "s2", "Lesson 2")
        + (name, "Week 1", None, None, None, None, None)
        + ("12", "1:0:0", "1:2:0", "1:2:0", "0", None, None, jan, "0", "1"),
        (at("vertical", "v3"), *head, at("sequential", "s2"), "vertical", "v3", "Unit C", name)
        + ("Week 1", "Lesson 2", None, None, None, None)
        + ("13", "1:0:0", "1:2:0", "1:2:1", "0", None, None, jan, "0", "0"),
        (at("chapter", "ch2"), *head, c, "chapter", "ch2", "Week 2", name)
        + (None, None, None, None, None, None)
        + ("14", "2:0:0", "2:0:0", "2:0:0", "0", None, None, mar, "0", "0"),
        (at("sequential", "s3"), *head, at("chapter", "ch2"), "sequential", "s3", "Exam", name)
        + ("Week 2", None, None, None, None, None)
        + ("15", "2:0:0", "2:1:0", "2:1:0", "1", "Final Exam", None, mar, "0", "0"),
        (at("vertical", "v4"), *head, at("sequential", "s3"), "vertical", "v4", "Exam unit", name)
        + ("Week 2", "Exam", None, None, None, None)
        + ("16", "2:0:0", "2:1:0", "2:1:1", "1", "Final Exam", None, mar, "0", "0"),
        (at("problem", "p5"), *head, at("vertical", "v4"), "problem", "p5", "Final question")
        + (name, "Week 2", "Exam", "Exam unit", None, "Final question", "1")
        + ("17", "2:0:0", "2:1:0", "2:1:1", "0", "Final Exam", None, mar, "0", "0"),
        # The orphan: no parent, no ancestor names, no component, no position; only its own
        # settings, and Open edX's defaults for the rest.
        (at("html", "o1"), *head, None, "html", "o1", "Lost", None)
        + (None, None, None, None, None, None)
        + (None, None, None, None, "1", None, None, default_start, "0", "0"),
    ]
    expected = [row + published for row in expected]
    rows = all_rows(datasource_settings(tmp_path))
    # Course order: depth first from the root, then the orphans.
    assert rows == expected
    # The generator's bookkeeping agrees, and so does the depth-first check.
    assert_same_rows(expected_rows([course]), without_order(rows))
    assert_depth_first_order(course, rows)


def test_generated_courses_every_column(tmp_path: Path, store: Modulestore) -> None:
    rows = all_rows(datasource_settings(tmp_path))
    courses = store.extracted("mongodb")
    assert_same_rows(expected_rows(courses), without_order(rows))
    for course in courses:
        assert_depth_first_order(course, rows)
    # Course by course, in course id order, each starting with its course block.
    order = [r[1] for r in rows]
    assert order == sorted(order)
    firsts = [r for i, r in enumerate(rows) if i == 0 or rows[i - 1][1] != r[1]]
    assert [r[6] for r in firsts] == ["course"] * len(courses)
    # Structural checks that do not depend on the generator's bookkeeping.
    by_location = {r[0]: r for r in rows}
    assert len(by_location) == len(rows)
    columns = dict(zip(range(9, 14), cb.ANCESTOR_TYPES, strict=True))
    for r in rows:
        assert r[0].startswith("course-v1:" if r[6] == "course" else "block-v1:")
        if r[5] is None:
            assert r[9:15] == (None,) * 6  # the course block and orphans
            continue
        parent = by_location[r[5]]
        assert parent[1] == r[1]
        # An ancestor column is the parent's, or the parent's own name when the parent is
        # the first (outermost) block of that type on the way down.
        for i, kind in columns.items():
            assert r[i] == (parent[8] if parent[6] == kind and parent[i] is None else parent[i])
        assert r[9] == by_location[r[1]][8]
        # Settings come down from the parent unless the block's own document sets them.
        assert r[20] in ("0", "1") and r[24] in ("0", "1") and r[25] in ("0", "1")
        if parent[6] != "course" and r[6] != "sequential":
            assert r[21] == parent[21]  # format: the subsection's, all the way down
        assert (r[15] is not None) <= (r[6] == "problem")
    types = {r[6] for r in rows}
    assert {"course", "chapter", "sequential", "vertical", "problem", "html", "video"} <= types
    assert "library_content" in types
    # The generator sets these often enough that every value shows up.
    assert {r[21] for r in rows} >= {None, *modulestore.ASSIGNMENT_TYPES}
    assert {r[20] for r in rows} == {"0", "1"} and {r[24] for r in rows} == {"0", "1"}
    assert {r[25] for r in rows} == {"0", "1"} and len({r[22] for r in rows}) > 5
    names = {r[8] for r in rows}
    for awkward in modulestore.AWKWARD_NAMES:
        assert awkward in names


def test_rerun_is_its_own_course(tmp_path: Path, store: Modulestore) -> None:
    rows = all_rows(datasource_settings(tmp_path))
    old = [r for r in rows if r[1] == "course-v1:PanoramaX+DS101+2024_T1"]
    new = [r for r in rows if r[1] == "course-v1:PanoramaX+DS101+2025_T1"]
    assert len(old) == len(new) > 50
    assert {r[7] for r in old} == {r[7] for r in new}  # Studio keeps block ids in reruns
    assert not {r[0] for r in old} & {r[0] for r in new}
    assert {r[9] for r in new if r[5] is not None} == {"Data Science 101 (2025)"}


def test_weight_rules(tmp_path: Path, store: Modulestore) -> None:
    rows = all_rows(datasource_settings(tmp_path))
    showcase = {r[8]: r[15] for r in rows if r[1] == "course-v1:PanoramaX+DS101+2024_T1" and r[2]}
    assert showcase["Two responses"] == "2"
    assert showcase["Explicit weight 2.5"] == "2.5"
    assert showcase["Explicit weight zero"] == "0"
    assert showcase["Float weight 1.0"] == "1"
    assert showcase["Every response type"] == "15"
    assert showcase["Commented and escaped responses"] == "1"
    assert showcase["No responses"] == "0"
    assert showcase["Missing definition"] is None  # unknown, not zero
    assert showcase["Missing definition, explicit weight"] == "3"
    weights = [r[15] for r in rows if r[6] == "problem"]
    assert all(w is None or float(w) >= 0 for w in weights)
    assert all(r[15] is None for r in rows if r[6] != "problem")


def test_orphans_cycles_dangling_children_and_odd_documents(
    tmp_path: Path, client: mongomock.MongoClient, caplog: pytest.LogCaptureFixture
) -> None:
    db = client["edxapp"]

    def block(kind: str, bid: str, *children: Any, **fields: Any) -> dict[str, Any]:
        f = dict(fields, children=list(children)) if children else dict(fields)
        return {"block_type": kind, "block_id": bid, "definition": ObjectId(), "fields": f}

    no_root_field = ObjectId()
    no_course_block = ObjectId()
    db["modulestore.structures"].insert_many(
        [
            {
                # No 'root' field: the course block is the root. The chapter lists the
                # course (a cycle through the root), itself, a ghost and malformed entries.
                "_id": no_root_field,
                "blocks": [
                    block("course", "course", ["chapter", "a"], display_name="Odd"),
                    block(
                        "chapter",
                        "a",
                        ["course", "course"],
                        ["chapter", "a"],
                        ["video", "ghost"],
                        ["vertical"],
                        None,
                        "text",
                        ["vertical", "b"],
                        display_name="A",
                    ),
                    block("vertical", "b", ["chapter", "a"], ["vertical", "in"], display_name="B"),
                    block("vertical", "b", display_name="duplicate entry, ignored"),
                    # Nested units (as in a split_test): the outer one names them, as in the
                    # original, where the outermost ancestor of a type wins.
                    block("vertical", "in", ["html", "deep"], display_name="Inner"),
                    block("html", "deep", display_name="Deep"),
                    block("sequential", "lost", ["html", "under-lost"], display_name="L"),
                    block("html", "under-lost"),
                ],
            },
            {"_id": no_course_block, "blocks": [block("html", "alone", display_name="Alone")]},
        ]
    )
    db["modulestore.active_versions"].insert_many(
        [
            {
                "org": "O",
                "course": "C",
                "run": "R1",
                "versions": {"published-branch": no_root_field},
            },
            {
                "org": "O",
                "course": "C",
                "run": "R2",
                "versions": {"published-branch": no_course_block},
            },
            # A published version whose structure is gone: the course is skipped.
            {"org": "O", "course": "C", "run": "R3", "versions": {"published-branch": ObjectId()}},
        ]
    )
    # One course of three has no structure: allowed here (the default would fail the table).
    settings = datasource_settings(tmp_path, max_missing_structures_percent=40)
    with caplog.at_level(logging.WARNING, logger="panorama_elt"):
        rows = all_rows(settings)
    assert "course-v1:O+C+R3: published structure" in caplog.text
    got = {(r[1][-2:], r[6], r[7]): r for r in rows}
    assert len(rows) == len(got) == 8
    c1, c2 = "course-v1:O+C+R1", "course-v1:O+C+R2"
    loc_a = "block-v1:O+C+R1+type@chapter+block@a"
    loc_b = "block-v1:O+C+R1+type@vertical+block@b"
    assert got[("R1", "course", "course")][5] is None
    assert got[("R1", "chapter", "a")][5] == c1
    assert got[("R1", "vertical", "b")][5] == loc_a
    assert got[("R1", "vertical", "b")][8] == "B"
    assert got[("R1", "vertical", "b")][9:16] == ("Odd", "A", None, None, None, None, None)
    assert got[("R1", "vertical", "in")][5] == loc_b
    assert got[("R1", "vertical", "in")][9:15] == ("Odd", "A", None, "B", None, None)
    assert got[("R1", "html", "deep")][9:15] == ("Odd", "A", None, "B", None, "Deep")
    assert got[("R1", "html", "deep")][ORDER : ORDER + 4] == ("4", "1:0:0", "1:0:0", "1:0:1")
    # Orphans, and blocks only an orphan lists: no parent, no ancestors, no component.
    for key in (
        ("R1", "sequential", "lost"),
        ("R1", "html", "under-lost"),
        ("R2", "html", "alone"),
    ):
        assert got[key][5] is None and got[key][9:15] == (None,) * 6
        assert got[key][ORDER : ORDER + 4] == (None,) * 4
    assert got[("R2", "html", "alone")][1] == c2
    assert {r[9] for r in rows if r[1] == c1 and r[5] is not None} == {"Odd"}


def test_deep_tree_does_not_recurse(tmp_path: Path, client: mongomock.MongoClient) -> None:
    depth = 5000
    b = CourseBuilder(random.Random(2), "Deep", "D1", "R", "Deep course")
    parent = b.add(b.root, "chapter", "Chapter")
    for i in range(depth):
        parent = b.add(parent, "vertical", f"Level {i}", f"v{i}")
    b.problem(parent, "Bottom", ["stringresponse"], block_id="bottom")
    b.link(parent, b.root)  # and a cycle from the bottom to the top
    course = b.build()
    modulestore.write(client["edxapp"], [course])
    rows = all_rows(datasource_settings(tmp_path))
    assert len(rows) == depth + 3
    bottom = rows[-1]
    assert bottom[7] == "bottom"
    assert bottom[5] == f"block-v1:Deep+D1+R+type@vertical+block@v{depth - 1}"
    # The outermost unit names every block below it, as in the original.
    assert bottom[10:16] == ("Chapter", None, "Level 0", None, "Bottom", "1")
    # After the course, the chapter and the units; in the first unit, of no subsection.
    assert bottom[ORDER : ORDER + 4] == (str(depth + 2), "1:0:0", "1:0:0", "1:0:1")
    assert_same_rows(expected_rows([course]), without_order(rows))


def test_libraries_drafts_and_unpublished_courses_are_skipped(
    tmp_path: Path, store: Modulestore
) -> None:
    rows = all_rows(datasource_settings(tmp_path))
    course_ids = {r[1] for r in rows}
    assert course_ids == {c.course_id for c in store.extracted("mongodb")}
    library = store.course("library-v1:PanoramaX+LIB1")
    # The synthetic library even has a published branch: the "courses only" rule skips it.
    assert library.published is not None
    assert not any(r[0].startswith("library-v1:") or "+LIB1" in r[0] for r in rows)
    assert "course-v1:PanoramaX+DRAFT1+2026_T1" not in course_ids
    assert "course-v1:PanoramaX+IDX1+2023_T2" not in course_ids  # only in the MySQL index
    drafts = {b.block_id for c in store.courses for b in c.draft_only}
    assert drafts and not drafts & {r[7] for r in rows}
    assert "Draft only, never published" not in {r[8] for r in rows}


def test_settings_field_order_subset_and_unknown_field(tmp_path: Path, store: Modulestore) -> None:
    settings = datasource_settings(tmp_path)
    table = settings.tables[0]
    by_name = {f.name: f for f in table.fields}
    constant = FieldSettings("source", by_name["weight"].type, constant=True, value="openedx")
    picked = (by_name["weight"], constant, by_name["block_id"], by_name["module_location"])
    source = cs.CourseStructuresDatasource(settings)
    full = extract(source, table)
    rows = extract(source, _with_fields(table, picked))
    assert rows == [(r[15], r[7], r[0]) for r in full]
    unknown = (*picked, FieldSettings("grade", constant.type))
    with pytest.raises(SourceError, match="unknown field 'grade'"):
        source.extract(_with_fields(table, unknown), force=True, mark=None)
    with pytest.raises(SourceError, match="one table, 'course_structures'"):
        source.extract(_with_fields(table, picked, name="blocks"), force=True, mark=None)
    source.close()


def _with_fields(table: TableSettings, fields: tuple[Any, ...], **extra: Any) -> TableSettings:
    return replace(table, fields=fields, **extra)


def test_rows_are_lazy_and_reads_are_batched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: mongomock.MongoClient
) -> None:
    store = modulestore.generate(client["edxapp"], courses=14, seed=3)
    counting = CountingClient(client)
    monkeypatch.setattr(cs, "mongo_client_factory", lambda *a, **k: counting)
    monkeypatch.setattr(cs, "STRUCTURE_BATCH", 4)
    monkeypatch.setattr(cs, "DEFINITION_BATCH", 25)
    monkeypatch.setattr(cs, "ROW_BATCH", 50)
    settings = datasource_settings(tmp_path)
    source = cs.CourseStructuresDatasource(settings)
    extraction = source.extract(settings.tables[0], force=True, mark=None)
    courses = store.extracted("mongodb")
    # Before rows are asked for, only one existence check (ids only) of every structure.
    assert counting.log == [(cs.STRUCTURES, 16, True)]
    assert set(counting.asked(cs.STRUCTURES, ids_only=True)) == {c.published for c in courses}
    assert extraction.batches is not None
    first = next(extraction.batches)
    assert [name for name, _, ids_only in counting.log if not ids_only].count(cs.STRUCTURES) == 1
    batches = [first, *extraction.batches]
    source.close()
    all_of_them = [row for batch in batches for row in batch]
    assert [len(b) for b in batches[:-1]] == [50] * (len(batches) - 1)  # ROW_BATCH rows
    assert 0 < len(batches[-1]) <= 50 and len(batches) > 10
    assert len({r[1] for r in all_of_them}) == len(courses) == 16
    # Structures: 4 per query, each course's structure asked once.
    reads = [(name, n) for name, n, ids_only in counting.log if not ids_only]
    structure_sizes = [n for name, n in reads if name == cs.STRUCTURES]
    assert structure_sizes == [4, 4, 4, 4]
    assert sorted(counting.asked(cs.STRUCTURES)) == sorted(c.published for c in courses)
    # Definitions: only for problems without an explicit weight, each asked once, at most 25
    # per query, and per batch of structures as few queries as that allows.
    wanted = {
        b.definition
        for c in courses
        for b in c.blocks.values()
        if b.block_type == "problem" and b.weight is None
    }
    asked = counting.asked(cs.DEFINITIONS)
    assert set(asked) == wanted
    # Each once per batch of structures (a rerun shares definitions with its original).
    finds = iter(counting.finds[cs.DEFINITIONS])
    per_batch: list[list[Any]] = []
    for name, _ in reads:
        if name == cs.STRUCTURES:
            per_batch.append([])
        else:
            per_batch[-1].extend(next(finds)["filter"]["_id"]["$in"])
    assert all(len(ids) == len(set(ids)) for ids in per_batch)
    definitions: list[list[int]] = []
    for name, n in reads:
        if name == cs.STRUCTURES:
            definitions.append([])
        else:
            definitions[-1].append(n)
    for sizes in definitions:
        assert len(sizes) == math.ceil(sum(sizes) / 25)
        assert all(n == 25 for n in sizes[:-1])
    assert len(counting.finds[cs.DEFINITIONS]) < len(wanted) / 5
    assert all(f.get("batch_size") for f in counting.finds[cs.STRUCTURES])
    assert all(f.get("batch_size") for f in counting.finds[cs.DEFINITIONS])


def test_definition_queries_grow_with_batches_not_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cs, "DEFINITION_BATCH", 50)
    seen = {}
    for n in (2, 14):
        inner = mongomock.MongoClient()
        modulestore.generate(inner["edxapp"], courses=n, seed=5)
        counting = CountingClient(inner)
        monkeypatch.setattr(cs, "mongo_client_factory", lambda *a, c=counting, **k: c)
        rows = all_rows(datasource_settings(tmp_path))
        assert len({r[1] for r in rows}) <= cs.STRUCTURE_BATCH  # one batch of structures
        queries = [n for name, n, _ in counting.log if name == cs.DEFINITIONS]
        assert len(queries) == math.ceil(sum(queries) / 50)
        problems = sum(1 for r in rows if r[6] == "problem")
        seen[n] = (problems, sum(queries), len(queries))
    (few, few_asked, few_queries), (many, many_asked, many_queries) = seen[2], seen[14]
    assert many > 3 * few and many_asked > 3 * few_asked > 50
    assert few_queries == math.ceil(few_asked / 50) and many_queries == math.ceil(many_asked / 50)
    assert many_queries < many / 20


# --- connections and errors ----------------------------------------------------------------


def test_test_connection(tmp_path: Path, store: Modulestore) -> None:
    source = cs.CourseStructuresDatasource(datasource_settings(tmp_path))
    detail = source.test_connection()
    source.close()
    active = sum(1 for c in store.courses if c.in_active_versions)
    assert detail == (
        f"MongoDB at mongodb://{MONGO_HOST}:27017/edxapp: structures answer, "
        f"{active} active versions"
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"mongodb_host": "127.0.0.1", "mongodb_port": 1, "mongodb_username": "edxapp001"},
        {"mongodb_uri": "mongodb://edxapp001:{pw}@127.0.0.1:1/edxapp?authSource=admin"},
    ],
    ids=["host", "uri"],
)
def test_mongodb_down_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]
) -> None:
    password = "s3cret-Pa55"
    extra = {k: v.format(pw=password) if isinstance(v, str) else v for k, v in extra.items()}
    monkeypatch.setattr(cs, "mongo_client_factory", pymongo.MongoClient)
    settings = datasource_settings(
        tmp_path, mongodb_password=password, mongodb_timeout_seconds=1, **extra
    )
    source = cs.CourseStructuresDatasource(settings)
    try:
        for attempt in (
            lambda: source.extract(settings.tables[0], force=True, mark=None),
            source.test_connection,
        ):
            with pytest.raises(SourceError) as caught:
                attempt()
            message = str(caught.value)
            assert message.startswith(
                "datasource openedx_course_structures (mongodb://127.0.0.1:1/"
            )
            assert "cannot connect" in message and "Connection refused" in message
            assert "\n" not in message and "Topology" not in message
            assert password not in message and "edxapp001" not in message
    finally:
        source.close()


def test_a_mongodb_down_does_not_stop_other_datasources(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: mongomock.MongoClient,
    mysql_server: dict[str, Any],
    scratch_db: str,
) -> None:
    modulestore.generate(client["edxapp"], courses=1, seed=1)

    def factory(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("host") == "127.0.0.1":
            return pymongo.MongoClient(*args, **kwargs)
        return client

    monkeypatch.setattr(cs, "mongo_client_factory", factory)
    down = source_entry(
        "down_structures",
        mongodb_host="127.0.0.1",
        mongodb_port=1,
        mongodb_password="hunter2-secret",
        mongodb_username="u",
        mongodb_timeout_seconds=1,
    )
    # Another datasource of the same run: a small MySQL table.
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE healthy (id int primary key)")
        cur.execute("INSERT INTO healthy VALUES (1), (2)")
    healthy = mysql_source(
        mysql_server, scratch_db, [{"name": "healthy", "fields": [{"name": "id", "type": "int"}]}]
    )
    settings_file = write_settings(
        tmp_path / "settings.yaml", local_datalake(tmp_path / "lake"), [down, healthy]
    )
    result = cli(settings_file, "extract-and-load", "--all", "--force")
    assert result.exit_code == 1
    assert "hunter2-secret" not in result.output
    failed = [line for line in result.output.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "127.0.0.1:1" in failed[0] and "down_structures" in failed[0]
    ok = [line for line in result.output.splitlines() if line.startswith("healthy ")]
    assert len(ok) == 1 and ok[0].rstrip().endswith("ok") and " 2 " in ok[0]


# --- MySQL active versions -----------------------------------------------------------------


@pytest.mark.mariadb
def test_active_versions_from_the_mysql_course_index(
    tmp_path: Path, store: Modulestore, mysql_server: dict[str, Any], scratch_db: str
) -> None:
    with connect(mysql_server, scratch_db) as conn:
        written = modulestore.write_course_index(conn, store.courses)
    assert written == sum(1 for c in store.courses if c.in_course_index)
    mysql = {
        "mysql_host": mysql_server["host"],
        "mysql_port": mysql_server["port"],
        "mysql_username": mysql_server["user"],
        "mysql_password": mysql_server["password"],
        "mysql_database": scratch_db,
    }
    settings = datasource_settings(tmp_path, **mysql)
    assert settings.mysql is not None
    rows = all_rows(settings)
    courses = store.extracted("mysql")
    ids = {c.course_id for c in courses}
    # The index-only course is read; the library (whose row even names a published
    # version) and the never-published course are not.
    assert "course-v1:PanoramaX+IDX1+2023_T2" in ids
    assert ids == {r[1] for r in rows}
    assert_same_rows(expected_rows(courses), without_order(rows))
    source = cs.CourseStructuresDatasource(settings)
    assert f"{written} rows in {cs.COURSE_INDEX_TABLE}" in source.test_connection()
    source.close()
    # Before Nutmeg there is no such table: the message says what to do.
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {cs.COURSE_INDEX_TABLE}")
    with pytest.raises(SourceError, match="leave mysql_host and mysql_username empty"):
        all_rows(settings)
    wrong = datasource_settings(tmp_path, **{**mysql, "mysql_password": "wrong-pw-123"})
    with pytest.raises(SourceError, match="access denied") as caught:
        all_rows(wrong)
    assert "wrong-pw-123" not in str(caught.value)


# --- end to end ----------------------------------------------------------------------------


def cli(settings: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--settings", str(settings), *args], catch_exceptions=False)


def typed(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row of text as the typed view of the template's types returns it."""
    numbers = {"weight": float, "block_order": int, "graded": int, "hide_from_toc": int}
    numbers["visible_to_staff_only"] = int
    dates = {"due", "start", "published_on"}
    out = []
    for name, value in zip(COLUMNS, row, strict=True):
        if value is not None and name in numbers:
            value = numbers[name](value)
        elif value is not None and name in dates:
            value = datetime.fromisoformat(value)
        out.append(value)
    return tuple(out)


@pytest.mark.parametrize("types", ["template", "varchar"])
def test_end_to_end_into_the_local_datalake(
    tmp_path: Path, store: Modulestore, client: mongomock.MongoClient, types: str
) -> None:
    entry = source_entry()
    if types == "template":
        template = yaml.safe_load(TEMPLATE.read_text())["datasources"][0]["tables"][0]
        entry["tables"][0]["fields"] = template["fields"]
    settings_file = write_settings(
        tmp_path / "settings.yaml", local_datalake(tmp_path / "lake", lms=LMS), [entry]
    )
    for command in (
        ["create-datalake-tables", "--all"],
        ["create-datalake-views", "--all"],
        ["extract-and-load", "--tables", "course_structures"],
    ):
        result = cli(settings_file, *command)
        assert result.exit_code == 0, result.output
    db = duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True)
    try:
        columns = ", ".join(f'"{c}"' for c in COLUMNS)
        view = db.execute(
            f"SELECT {columns} FROM openedx_table_course_structures WHERE lms = ?", [LMS]
        ).fetchall()
    finally:
        db.close()
    for course in store.extracted("mongodb"):
        assert_depth_first_order(course, view)
    expected = expected_rows(store.extracted("mongodb"))
    expected = [(*r[:ORDER], None, *r[ORDER:]) for r in expected]  # order checked above
    if types == "template":
        expected = [typed(r) for r in expected]
    assert_same_rows(expected, [(*r[:ORDER], None, *r[ORDER + 1 :]) for r in view])
    names = {r[8] for r in view}
    assert 'Data "Science", 101\nIntro — 📊 \\ back' in {r[9] for r in view}
    assert "Line one\nline two\r\nline three" in names and "" in names and None in names
    files = list((tmp_path / "lake").glob("openedx/course_structures/**/*.csv"))
    assert [f.parent.name for f in files] == [f"lms={LMS}"]  # one file, base partition only
    # The datasource was reached with the secondary read preference and the timeouts.
    _, kwargs = client.factory_calls[-1]
    assert kwargs["readPreference"] == "secondaryPreferred"
    assert kwargs["host"] == MONGO_HOST


# --- only changed courses re-read ----------------------------------------------------------


@pytest.mark.mariadb
def test_hourly_runs_read_only_republished_courses(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: mongomock.MongoClient,
    mysql_server: dict[str, Any],
    scratch_db: str,
) -> None:
    store = modulestore.generate(client["edxapp"], courses=3, seed=7)
    with connect(mysql_server, scratch_db) as conn:
        modulestore.write_course_index(conn, store.courses)
    counting = CountingClient(client)
    monkeypatch.setattr(cs, "mongo_client_factory", lambda *a, **k: counting)
    entry = source_entry(
        mysql_host=mysql_server["host"],
        mysql_port=mysql_server["port"],
        mysql_username=mysql_server["user"],
        mysql_password=mysql_server["password"],
        mysql_database=scratch_db,
        max_missing_structures_percent=20,  # one course of six may lag behind
    )
    entry["tables"][0]["partitions"] = {"partition_fields": ["course_id"]}
    settings_file = write_settings(
        tmp_path / "settings.yaml", local_datalake(tmp_path / "lake", lms=LMS), [entry]
    )
    for command in (["create-datalake-tables", "--all"], ["create-datalake-views", "--all"]):
        assert cli(settings_file, *command).exit_code == 0
    courses = store.extracted("mysql")
    assert len(courses) == 6

    def run(*extra: str) -> dict[str, Any]:
        for finds in counting.finds.values():
            finds.clear()
        report = tmp_path / "r.json"
        result = cli(
            settings_file, "extract-and-load", "--all", "--results-file", str(report), *extra
        )
        assert result.exit_code == 0, result.output
        (table,) = json.loads(report.read_text())["tables"]
        table["output"] = result.output
        return table

    def view() -> dict[str, list[tuple[Any, ...]]]:
        db = duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True)
        try:
            columns = ", ".join(f'"{c}"' for c in COLUMNS)
            rows = db.execute(f"SELECT {columns} FROM openedx_table_course_structures").fetchall()
        finally:
            db.close()
        by_course: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_course.setdefault(row[1], []).append(row)
        return {c: sorted(r, key=repr) for c, r in by_course.items()}

    def counts(read: int, skipped: int, removed: int = 0, missing: int = 0) -> dict[str, int]:
        return {
            "courses_read": read,
            "courses_skipped": skipped,
            "courses_removed": removed,
            "courses_missing": missing,
        }

    def publish(course: Course, version: ObjectId) -> None:
        with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
            cur.execute(
                f"UPDATE {cs.COURSE_INDEX_TABLE} SET published_version = %s WHERE course_id = %s",
                (str(version), course.course_id),
            )

    first = run()  # nothing registered yet: every course
    assert first["mode"] == "full" and first["counts"] == counts(6, 0)
    assert first["partitions_written"] == first["partitions_registered"] == 6
    before = view()
    assert set(before) == {c.course_id for c in courses}
    assert_same_rows(expected_rows(courses), without_order([r for v in before.values() for r in v]))

    # Studio publishes one course again: a new structure, and the index names it.
    target = courses[2]
    structures = client["edxapp"][cs.STRUCTURES]
    document = structures.find_one({"_id": target.published})
    new_version = ObjectId()
    document["_id"] = new_version
    document["edited_on"] = datetime(2024, 6, 1, 8, 0, 0)
    root = next(b for b in document["blocks"] if b["block_type"] == "course")
    root["fields"]["display_name"] = "Renamed and published again"
    structures.insert_one(document)
    publish(target, new_version)
    second = run()
    assert second["mode"] == "incremental" and second["counts"] == counts(1, 5)
    assert (second["partitions_written"], second["partitions_registered"]) == (1, 0)
    assert second["partitions_removed"] == 0
    assert "courses_read=1 courses_skipped=5" in second["output"]
    # MongoDB was asked for that one structure only (existence check, then the read).
    assert counting.asked(cs.STRUCTURES, ids_only=True) == [new_version]
    assert counting.asked(cs.STRUCTURES) == [new_version]
    after = view()
    assert {c: r for c, r in after.items() if c != target.course_id} == {
        c: r for c, r in before.items() if c != target.course_id
    }
    renamed = after[target.course_id]
    assert len(renamed) == len(before[target.course_id])
    assert {r[8] for r in renamed if r[6] == "course"} == {"Renamed and published again"}
    assert {r[9] for r in renamed if r[5] is not None} == {"Renamed and published again"}
    assert {(r[26], r[27]) for r in renamed} == {(str(new_version), "2024-06-01 08:00:00")}

    third = run()  # nothing changed: nothing read
    assert third["counts"] == counts(0, 6) and third["partitions_written"] == 0
    assert counting.asked(cs.STRUCTURES) == counting.asked(cs.STRUCTURES, ids_only=True) == []
    assert view() == after

    # A course published again whose structure has not reached this replica yet: it keeps
    # its rows, and is read once the structure is there.
    lagging = courses[3]
    lagging_version = ObjectId()
    publish(lagging, lagging_version)
    lagged = run()
    assert lagged["counts"] == counts(0, 5, missing=1) and lagged["partitions_removed"] == 0
    assert view() == after
    document = structures.find_one({"_id": lagging.published})
    document["_id"] = lagging_version
    structures.insert_one(document)
    caught_up = run()
    assert caught_up["counts"] == counts(1, 5) and counting.asked(cs.STRUCTURES) == [
        lagging_version
    ]
    assert {r[26] for r in view()[lagging.course_id]} == {str(lagging_version)}
    after = view()

    # One course is deleted, another unpublished: their partitions go.
    deleted, unpublished = courses[0].course_id, courses[1].course_id
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {cs.COURSE_INDEX_TABLE} WHERE course_id = %s", (deleted,))
        cur.execute(
            f"UPDATE {cs.COURSE_INDEX_TABLE} SET published_version = '' WHERE course_id = %s",
            (unpublished,),
        )
    fourth = run()
    assert fourth["counts"] == counts(0, 4, removed=2) and fourth["partitions_removed"] == 2
    assert view() == {c: r for c, r in after.items() if c not in (deleted, unpublished)}
    assert not list((tmp_path / "lake").glob(f"**/course_id={quote(deleted, safe='')}"))

    forced = run("--force")  # every published course again
    assert forced["mode"] == "full" and forced["counts"] == counts(4, 0)
    assert forced["partitions_written"] == 4 and forced["partitions_removed"] == 0
    assert view() == {c: r for c, r in after.items() if c not in (deleted, unpublished)}

    # After the table is dropped and created again, the stored versions describe nothing:
    # the next hourly run reads every course.
    for command in ("drop-datalake-tables", "create-datalake-tables", "create-datalake-views"):
        assert cli(settings_file, command, "--all").exit_code == 0
    again = run()
    assert again["mode"] == "full" and again["counts"] == counts(4, 0)
    assert view() == {c: r for c, r in after.items() if c not in (deleted, unpublished)}


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        ({"partition_fields": ["organization"]}, "can only be partitioned by course_id"),
        (
            {"partition_fields": ["course_id"], "timestamp_field": "due", "interval": "1 hour"},
            "take no timestamp_field or interval",
        ),
    ],
)
def test_unsupported_partitions_are_one_clear_line(
    tmp_path: Path, store: Modulestore, partitions: dict[str, Any], message: str
) -> None:
    entry = source_entry()
    entry["tables"][0]["partitions"] = partitions
    raw = {"datalake": local_datalake(tmp_path / "lake"), "datasources": [entry]}
    settings = parse_settings(raw, tmp_path / "settings.yaml").datasources[0]
    source = cs.CourseStructuresDatasource(settings)
    with pytest.raises(SourceError, match=message):
        source.extract(settings.tables[0], force=False, mark=None)
    source.close()


# --- missing structures --------------------------------------------------------------------


def test_missing_structures_fail_the_table_over_the_threshold(
    tmp_path: Path,
    client: mongomock.MongoClient,
    store: Modulestore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    courses = store.extracted("mongodb")
    assert len(courses) == 5
    gone = courses[1]
    client["edxapp"][cs.STRUCTURES].delete_one({"_id": gone.published})  # replica lag
    with pytest.raises(SourceError) as caught:
        all_rows(datasource_settings(tmp_path))  # default: 10%
    message = str(caught.value)
    assert message.startswith("course_structures: 1 of 5 published courses (20%) have no")
    assert gone.course_id in message and "max_missing_structures_percent (10%)" in message
    assert "\n" not in message
    # At 20% allowed, the course is left out with a warning; the others are all there.
    with caplog.at_level(logging.WARNING, logger="panorama_elt"):
        rows = all_rows(datasource_settings(tmp_path, max_missing_structures_percent=20))
    assert f"{gone.course_id}: published structure {gone.published} not found" in caplog.text
    kept = [c for c in courses if c is not gone]
    assert_same_rows(expected_rows(kept), without_order(rows))
    # A database holding no course at all and no structure: the wrong database, not a success.
    with pytest.raises(
        SourceError, match=r"no published course and no structure .*mongodb_database"
    ):
        all_rows(datasource_settings(tmp_path, mongodb_database="not_the_modulestore"))


@pytest.mark.parametrize(("value", "problem"), [(101, "between 0 and 100"), ("ten", "whole")])
def test_bad_threshold_setting(tmp_path: Path, value: Any, problem: str) -> None:
    raw = {
        "datalake": local_datalake(tmp_path / "lake"),
        "datasources": [source_entry(max_missing_structures_percent=value)],
    }
    with pytest.raises(
        SettingsError, match=rf"datasources\[0\]\.max_missing_structures_percent: .*{problem}"
    ):
        parse_settings(raw, tmp_path / "settings.yaml")
