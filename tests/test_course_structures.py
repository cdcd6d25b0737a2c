"""Open edX course structures: MongoDB (mongomock) and the MySQL course index -> rows -> DuckDB."""

from __future__ import annotations

import functools
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import mongomock
import pymongo
import pytest
import yaml
from bson import ObjectId
from bson.decimal128 import Decimal128
from click.testing import CliRunner

from panorama_elt.cli import main
from panorama_elt.datasources import openedx_course_structures as cs
from panorama_elt.errors import SourceError
from panorama_elt.rows import batched
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
]
CONTAINERS = {"course", "chapter", "sequential", "vertical", "library_content"}
MONGO_HOST = "mongo.example.com"
LMS = "lms.example.com"


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


def extract(source: cs.CourseStructuresDatasource, table: TableSettings) -> list[tuple[Any, ...]]:
    extraction = source.extract(table, force=False, mark=None)
    batches = list(extraction.batches)
    assert extraction.full and extraction.mark is None and not extraction.as_bytes
    return [tuple(row) for batch in batches for row in batch]


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
    """Rows computed from what the generator recorded while building each tree."""
    rows = []
    for course in courses:
        for block in course.blocks.values():
            e = block.expected
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
                    course.name,
                    e.chapter,
                    e.sequential,
                    e.vertical,
                    e.library,
                    None if block.block_type in CONTAINERS else block.display_name,
                    e.weight,
                )
            )
    return rows


def assert_same_rows(expected: list[tuple[Any, ...]], actual: list[tuple[Any, ...]]) -> None:
    assert len(actual) == len(expected)
    missing = [r for r in expected if r not in actual][:3]
    extra = [r for r in actual if r not in expected][:3]
    assert not missing and not extra, f"missing {missing}; unexpected {extra}"
    assert sorted(actual, key=repr) == sorted(expected, key=repr)


class CountingCollection:
    """A collection whose find calls are recorded (filter and keyword arguments)."""

    def __init__(self, inner: Any, owner: CountingClient, name: str) -> None:
        self._inner = inner
        self._owner = owner
        self._name = name

    def find(self, *args: Any, **kwargs: Any) -> Any:
        query = args[0] if args else kwargs.get("filter")
        self._owner.finds[self._name].append({"filter": query, **kwargs})
        self._owner.log.append((self._name, len(query["_id"]["$in"])))
        return self._inner.find(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountingClient:
    """Wraps a client so finds on structures and definitions are recorded, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.finds: dict[str, list[dict[str, Any]]] = {cs.STRUCTURES: [], cs.DEFINITIONS: []}
        self.log: list[tuple[str, int]] = []

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
    assert cs.number_text(value) == text


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
        ("".join(f"<{t}>" for t in cs.RESPONSE_TAGS), len(cs.RESPONSE_TAGS)),
    ],
)
def test_count_responses(xml: str | None, count: int) -> None:
    assert cs.count_responses(xml) == count


def test_generator_response_types_are_the_datasource_ones() -> None:
    assert set(modulestore.RESPONSE_TYPES) == set(cs.RESPONSE_TAGS)


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
    assert table["fields"][-1]["type"] in ("varchar", "double")
    source = cs.CourseStructuresDatasource(datasource_settings(tmp_path))
    described = source.describe(["course_structures", "other"])
    assert described == {"course_structures": [(f["name"], f["type"]) for f in table["fields"]]}


# --- rows ----------------------------------------------------------------------------------


def test_hand_built_course(tmp_path: Path, client: mongomock.MongoClient) -> None:
    b = CourseBuilder(random.Random(1), "OrgX", "T1", "2024", 'Tiny, "course"')
    ch = b.add(b.root, "chapter", "Week 1", "ch1")
    seq = b.add(ch, "sequential", "Lesson\n1", "s1")
    v = b.add(seq, "vertical", "Unit 🎓", "v1")
    b.problem(v, "Two parts", ["stringresponse", "multiplechoiceresponse"], block_id="p1")
    b.problem(v, "Weighted", ["stringresponse"], weight=(2.5, "2.5"), block_id="p2")
    b.add(v, "html", "Back\\slash", "h1")
    lib = b.add(v, "library_content", "Bank", "lc1")
    b.problem(lib, "From the bank", ["numericalresponse"], weight=(1.0, "1"), block_id="p3")
    b.problem(v, None, ["optionresponse"], definition_stored=False, block_id="p4")
    b.link(v, seq)  # a cycle
    b.link(v, ("problem", "ghost"))  # a child that names no block
    b.orphan("html", "Lost", "o1")
    course = b.build()
    modulestore.write(client["edxapp"], [course])

    c = "course-v1:OrgX+T1+2024"

    def at(kind: str, block: str) -> str:
        return f"block-v1:OrgX+T1+2024+type@{kind}+block@{block}"

    head = (c, "OrgX", "T1", "2024")
    name = 'Tiny, "course"'
    expected = [
        (c, *head, None, "course", "course", name, name, None, None, None, None, None, None),
        (at("chapter", "ch1"), *head, c, "chapter", "ch1", "Week 1", name)
        + ("Week 1", None, None, None, None, None),
        (at("sequential", "s1"), *head, at("chapter", "ch1"), "sequential", "s1", "Lesson\n1")
        + (name, "Week 1", "Lesson\n1", None, None, None, None),
        (at("vertical", "v1"), *head, at("sequential", "s1"), "vertical", "v1", "Unit 🎓", name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, None, None),
        (at("problem", "p1"), *head, at("vertical", "v1"), "problem", "p1", "Two parts", name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, "Two parts", "2"),
        (at("problem", "p2"), *head, at("vertical", "v1"), "problem", "p2", "Weighted", name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, "Weighted", "2.5"),
        (at("html", "h1"), *head, at("vertical", "v1"), "html", "h1", "Back\\slash", name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, "Back\\slash", None),
        (at("library_content", "lc1"), *head, at("vertical", "v1"), "library_content", "lc1")
        + ("Bank", name, "Week 1", "Lesson\n1", "Unit 🎓", "Bank", None, None),
        (at("problem", "p3"), *head, at("library_content", "lc1"), "problem", "p3")
        + ("From the bank", name, "Week 1", "Lesson\n1", "Unit 🎓", "Bank", "From the bank", "1"),
        (at("problem", "p4"), *head, at("vertical", "v1"), "problem", "p4", None, name)
        + ("Week 1", "Lesson\n1", "Unit 🎓", None, None, None),
        (at("html", "o1"), *head, None, "html", "o1", "Lost", name)
        + (None, None, None, None, "Lost", None),
    ]
    rows = all_rows(datasource_settings(tmp_path))
    # Course order: depth first from the root, then the orphans.
    assert rows == expected
    assert_same_rows(expected_rows([course]), rows)  # the generator's bookkeeping agrees


def test_generated_courses_every_column(tmp_path: Path, store: Modulestore) -> None:
    rows = all_rows(datasource_settings(tmp_path))
    courses = store.extracted("mongodb")
    assert_same_rows(expected_rows(courses), rows)
    # Course by course, in course id order, each starting with its course block.
    order = [r[1] for r in rows]
    assert order == sorted(order)
    firsts = [r for i, r in enumerate(rows) if i == 0 or rows[i - 1][1] != r[1]]
    assert [r[6] for r in firsts] == ["course"] * len(courses)
    # Structural checks that do not depend on the generator's bookkeeping.
    by_location = {r[0]: r for r in rows}
    assert len(by_location) == len(rows)
    for r in rows:
        assert r[0].startswith("course-v1:" if r[6] == "course" else "block-v1:")
        if r[5] is not None:
            parent = by_location[r[5]]
            assert parent[1] == r[1]
            # An ancestor column is the parent's, unless the block is of that type itself.
            for i, kind in zip(range(10, 14), cs.ANCESTOR_TYPES, strict=True):
                assert r[i] == (r[8] if r[6] == kind else parent[i])
        assert r[9] == by_location[r[1]][8]
        assert (r[15] is not None) <= (r[6] == "problem")
    types = {r[6] for r in rows}
    assert {"course", "chapter", "sequential", "vertical", "problem", "html", "video"} <= types
    assert "library_content" in types
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
    assert {r[9] for r in new} == {"Data Science 101 (2025)"}


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
    tmp_path: Path, client: mongomock.MongoClient
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
                    block("vertical", "b", ["chapter", "a"], display_name="B"),
                    block("vertical", "b", display_name="duplicate entry, ignored"),
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
    rows = all_rows(datasource_settings(tmp_path))
    got = {(r[1][-2:], r[6], r[7]): r for r in rows}
    assert len(rows) == len(got) == 6
    c1, c2 = "course-v1:O+C+R1", "course-v1:O+C+R2"
    loc_a = "block-v1:O+C+R1+type@chapter+block@a"
    assert got[("R1", "course", "course")][5] is None
    assert got[("R1", "chapter", "a")][5] == c1
    assert got[("R1", "vertical", "b")][5] == loc_a
    assert got[("R1", "vertical", "b")][8] == "B"
    assert got[("R1", "vertical", "b")][10:13] == ("A", None, "B")
    # Orphans: no parent, only their own name in their own ancestor column.
    lost = got[("R1", "sequential", "lost")]
    assert lost[5] is None and lost[10:15] == (None, "L", None, None, None)
    under = got[("R1", "html", "under-lost")]
    assert under[5] is None and under[8] is None and under[10:16] == (None,) * 6
    assert {r[9] for r in rows if r[1] == c1} == {"Odd"}
    alone = got[("R2", "html", "alone")]
    assert alone[1] == c2 and alone[5] is None and alone[9] is None and alone[14] == "Alone"


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
    assert bottom[10:16] == ("Chapter", None, f"Level {depth - 1}", None, "Bottom", "1")
    assert_same_rows(expected_rows([course]), rows)


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
    settings = datasource_settings(tmp_path)
    source = cs.CourseStructuresDatasource(settings)
    # Batches of one row: the first batch needs the first structures only.
    monkeypatch.setattr(cs, "batched", functools.partial(batched, size=1))
    batches = source.extract(settings.tables[0], force=True, mark=None).batches
    assert counting.log == []  # nothing read before rows are asked for
    rows = (row for batch in batches for row in batch)
    first = next(rows)
    assert [name for name, _ in counting.log].count(cs.STRUCTURES) == 1
    all_of_them = [first, *rows]
    source.close()
    courses = store.extracted("mongodb")
    assert len({r[1] for r in all_of_them}) == len(courses) == 16
    # Structures: 4 per query, each course's structure asked once.
    structure_sizes = [n for name, n in counting.log if name == cs.STRUCTURES]
    assert structure_sizes == [4, 4, 4, 4]
    # Definitions: only for problems without an explicit weight, each asked once, at most 25
    # per query, and per batch of structures as few queries as that allows.
    wanted = {
        b.definition
        for c in courses
        for b in c.blocks.values()
        if b.block_type == "problem" and b.weight is None
    }
    asked = [oid for f in counting.finds[cs.DEFINITIONS] for oid in f["filter"]["_id"]["$in"]]
    assert len(asked) == len(set(asked)) and set(asked) == wanted
    batches: list[list[int]] = []
    for name, n in counting.log:
        if name == cs.STRUCTURES:
            batches.append([])
        else:
            batches[-1].append(n)
    for sizes in batches:
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
        queries = [n for name, n in counting.log if name == cs.DEFINITIONS]
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
    assert_same_rows(expected_rows(courses), rows)
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


@pytest.mark.parametrize("weight_type", ["varchar", "double"])
def test_end_to_end_into_the_local_datalake(
    tmp_path: Path, store: Modulestore, client: mongomock.MongoClient, weight_type: str
) -> None:
    entry = source_entry()
    entry["tables"][0]["fields"][-1]["type"] = weight_type
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
    expected = expected_rows(store.extracted("mongodb"))
    if weight_type == "double":
        expected = [(*r[:-1], None if r[-1] is None else float(r[-1])) for r in expected]
    assert_same_rows(expected, view)
    names = {r[8] for r in view}
    assert 'Data "Science", 101\nIntro — 📊 \\ back' in {r[9] for r in view}
    assert "Line one\nline two\r\nline three" in names and "" in names and None in names
    files = list((tmp_path / "lake").glob("openedx/course_structures/**/*.csv"))
    assert [f.parent.name for f in files] == [f"lms={LMS}"]  # one file, base partition only
    # The datasource was reached with the secondary read preference and the timeouts.
    _, kwargs = client.factory_calls[-1]
    assert kwargs["readPreference"] == "secondaryPreferred"
    assert kwargs["host"] == MONGO_HOST
