"""Deterministic synthetic Open edX split modulestore (MongoDB), and its MySQL course index.

``generate(db)`` fills any pymongo-compatible database (mongomock in tests, a real MongoDB for
the demo) with courses, a rerun, a content library, a draft-only course and the awkward cases
the course structures datasource must survive: display names with quotes, commas, line
breaks, emoji and backslashes, an orphan block, a cycle, a child that names no block, and a
problem whose definition is missing; subsections graded with an assignment type and a due
date, units with their own due date or staff-only visibility, library content with
``defaults``. Every block carries the answer a correct extraction must give
(``Block.expected``: ancestor names, numbers, resolved settings), worked out while the tree is
built, top down, so tests need not walk the structure themselves.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

BlockKey = tuple[str, str]

# XML of each response type, as Studio's templates write them.
RESPONSE_XML: dict[str, str] = {
    "multiplechoiceresponse": (
        '<multiplechoiceresponse><label>Pick one</label><choicegroup type="MultipleChoice">'
        '<choice correct="true">A</choice><choice correct="false">B</choice></choicegroup>'
        "</multiplechoiceresponse>"
    ),
    "choiceresponse": (
        '<choiceresponse><checkboxgroup><choice correct="true">x</choice>'
        '<choice correct="false">y</choice></checkboxgroup></choiceresponse>'
    ),
    "numericalresponse": (
        '<numericalresponse answer="3.14"><responseparam type="tolerance" default="1%"/>'
        "<formulaequationinput/></numericalresponse>"
    ),
    "stringresponse": '<stringresponse answer="Paris" type="ci"><textline size="20"/></stringresponse>',
    "optionresponse": (
        "<optionresponse><optioninput options=\"('yes','no')\" correct=\"yes\"/></optionresponse>"
    ),
    "customresponse": '<customresponse cfn="check"><textline size="40"/></customresponse>',
    "formularesponse": (
        '<formularesponse type="ci" samples="x@1:9#10" answer="x^2">'
        '<responseparam type="tolerance" default="0.001"/><formulaequationinput/></formularesponse>'
    ),
    "symbolicresponse": '<symbolicresponse answer="x+1"><textline math="1"/></symbolicresponse>',
    "schematicresponse": '<schematicresponse><schematic width="600" height="300"/></schematicresponse>',
    "imageresponse": '<imageresponse><imageinput src="/static/a.png" rectangle="(1,1)-(9,9)"/></imageresponse>',
    "jsmeresponse": "<jsmeresponse><jsme/></jsmeresponse>",
    "coderesponse": '<coderesponse queuename="q"><textbox mode="python"/></coderesponse>',
    "externalresponse": '<externalresponse url="http://grader"><textbox/></externalresponse>',
    "annotationresponse": "<annotationresponse><annotationinput><text>t</text></annotationinput></annotationresponse>",
    "choicetextresponse": (
        '<choicetextresponse><radiotextgroup><choice correct="true">About '
        '<numtolerance_input answer="5"/></choice></radiotextgroup></choicetextresponse>'
    ),
}
RESPONSE_TYPES = tuple(RESPONSE_XML)

# Explicit weights and the text a correct extraction writes for them.
WEIGHTS: tuple[tuple[Any, str], ...] = (
    (1, "1"),
    (2.5, "2.5"),
    (1.0, "1"),
    (0, "0"),
    (10, "10"),
    (0.1, "0.1"),
    (3.0, "3"),
)

AWKWARD_NAMES = (
    "Quotes \"double\" and 'single'",
    "Comma, separated, name",
    "Line one\nline two\r\nline three",
    "Emoji 🎓📚 and 4-byte 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Back\\slash, \\N and \\n literally",
    "Économie générale – 経済学 (Ωmega)",
    "Tab\tseparated",
    "",
)
PLAIN_WORDS = (
    "Introduction",
    "Basics",
    "Advanced topics",
    "Review",
    "Practice",
    "Case study",
    "Final exam",
    "Homework",
    "Lab",
    "Reading",
)
ORGS = ("MITx", "HarvardX", "UPValenciaX", "edX", "Open-Univ.X")
_EPOCH = datetime(2024, 1, 15, 9, 30, 0, 123456)


# What Open edX resolves for a block that sets nothing and inherits nothing.
DEFAULT_START_TEXT = "2030-01-01 00:00:00"
ANCESTOR_COLUMNS = {
    "course": "course_name",
    "chapter": "chapter",
    "sequential": "sequential",
    "vertical": "vertical",
    "library_content": "library",
}
NUMBERED = ("chapter", "sequential", "vertical")


@dataclass(frozen=True)
class Expected:
    """What a correct extraction reports for a block (its context in the course).

    Ancestor columns name the outermost ancestor of each type, never the block itself;
    orphans have none of them, no numbers, and only their own settings.
    """

    parent: BlockKey | None
    course_name: str | None = None
    chapter: str | None = None
    sequential: str | None = None
    vertical: str | None = None
    library: str | None = None
    weight: str | None = None
    numbers: str | None = None  # "section:subsection:unit" (unit_number); None for orphans
    graded: str = "0"
    format: str | None = None
    due: str | None = None
    start: str | None = DEFAULT_START_TEXT
    visible_to_staff_only: str = "0"
    hide_from_toc: str = "0"
    orphan: bool = False
    # What children start from: which ancestor types are taken, and the subsection's format.
    taken: frozenset[str] = frozenset()
    subsection_format: tuple[str | None] | None = None


@dataclass
class Block:
    """One block of a structure and its definition."""

    block_type: str
    block_id: str
    display_name: str | None
    definition: ObjectId
    expected: Expected
    children: list[BlockKey] = field(default_factory=list)
    weight: Any = None  # fields.weight; left out of the document when None
    data: str | None = None  # definition fields.data (problem and html XML)
    definition_stored: bool = True  # False: the definitions document is missing
    settings: dict[str, Any] = field(default_factory=dict)  # more fields (graded, due...)
    defaults: dict[str, Any] = field(default_factory=dict)  # the block's split "defaults"

    @property
    def key(self) -> BlockKey:
        return (self.block_type, self.block_id)


def studio_date(when: datetime) -> str:
    """A date setting as Studio stores it (XBlock Date.to_json of a UTC datetime)."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_text(when: datetime) -> str:
    """The text a correct extraction writes for a UTC date."""
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _own(block: Block, name: str) -> tuple[bool, Any]:
    """Whether the block sets ``name`` (its fields, else its defaults), and the value."""
    for source in (block.settings, block.defaults):
        if name in source:
            return True, source[name]
    return False, None


def _flag(value: Any) -> str:
    if isinstance(value, str):
        return "1" if value.lower() == "true" else "0"
    return "1" if value else "0"


def _date(value: Any) -> str | None:
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, str) and value:
        return utc_text(datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ"))
    return None


def expected_settings(block: Block, up: Expected | None) -> dict[str, Any]:
    """The inherited and own settings columns of ``block`` under a parent whose expectation
    is ``up`` (None: nothing to inherit); format is the subsection's (see _expected)."""
    out: dict[str, Any] = {}
    for name, convert in (
        ("graded", _flag),
        ("start", _date),
        ("due", _date),
        ("visible_to_staff_only", _flag),
    ):
        present, value = _own(block, name)
        if present:
            out[name] = convert(value)
        elif up is not None:
            out[name] = getattr(up, name)
    out["hide_from_toc"] = _flag(_own(block, "hide_from_toc")[1])
    return out


@dataclass
class Course:
    """A course (or library) with its published and draft structures."""

    org: str
    course: str
    run: str
    blocks: dict[BlockKey, Block]
    root: BlockKey
    draft: ObjectId
    published: ObjectId | None
    active_version_id: ObjectId
    draft_only: list[Block] = field(default_factory=list)  # blocks added since publishing
    in_active_versions: bool = True  # listed in MongoDB modulestore.active_versions
    in_course_index: bool = True  # listed in the MySQL course index
    library: bool = False
    edited_on: datetime | None = None  # of its structures, set when written

    @property
    def course_id(self) -> str:
        if self.library:
            return f"library-v1:{self.org}+{self.course}"
        return f"course-v1:{self.org}+{self.course}+{self.run}"

    @property
    def name(self) -> str | None:
        return self.blocks[self.root].display_name

    def extracted(self, source: str) -> bool:
        """True when the datasource must extract this course, reading versions from ``source``."""
        listed = self.in_course_index if source == "mysql" else self.in_active_versions
        return listed and not self.library and self.published is not None


@dataclass
class Modulestore:
    """Everything written; ``courses`` includes libraries and unpublished courses."""

    courses: list[Course]

    def extracted(self, source: str = "mongodb") -> list[Course]:
        """The courses whose rows an extraction must return, by course id."""
        return sorted((c for c in self.courses if c.extracted(source)), key=lambda c: c.course_id)

    def course(self, course_id: str) -> Course:
        return next(c for c in self.courses if c.course_id == course_id)


class CourseBuilder:
    """Builds one course top down, recording each block's expected context as it goes."""

    def __init__(
        self,
        rng: random.Random,
        org: str,
        course: str,
        run: str,
        name: str | None,
        root_type: str = "course",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.rng = rng
        self.org, self.course, self.run = org, course, run
        self.blocks: dict[BlockKey, Block] = {}
        self.root = (root_type, root_type)
        root = Block(root_type, root_type, name, oid(rng), Expected(None), settings=settings or {})
        root.expected = self._expected(root, None, "0:0:0", None)
        self._put(root)

    def _put(self, block: Block) -> BlockKey:
        if block.key in self.blocks:
            raise ValueError(f"duplicate block {block.key}")
        self.blocks[block.key] = block
        return block.key

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def _expected(
        self,
        block: Block,
        parent: Block | None,
        numbers: str | None,
        weight: str | None,
    ) -> Expected:
        """The block's expectation from its parent's (None: the root, or an orphan)."""
        up = parent.expected if parent is not None else None
        names: dict[str, Any] = {}
        taken: frozenset[str] = frozenset()
        subsection_format = None
        if parent is not None and up is not None:
            names = {
                c: getattr(up, c) for c in ("course_name", "chapter", "sequential", "vertical")
            }
            names["library"] = up.library
            taken = up.taken
            if parent.block_type in ANCESTOR_COLUMNS and parent.block_type not in taken:
                names[ANCESTOR_COLUMNS[parent.block_type]] = parent.display_name
                taken = taken | {parent.block_type}
            subsection_format = up.subsection_format
            if parent.block_type == "sequential" and subsection_format is None:
                subsection_format = (_own(parent, "format")[1],)
        values = expected_settings(block, up)
        own_format = _own(block, "format")[1]
        values["format"] = own_format if subsection_format is None else subsection_format[0]
        return Expected(
            parent=parent.key if parent is not None else None,
            weight=weight,
            numbers=numbers,
            taken=taken,
            subsection_format=subsection_format,
            orphan=numbers is None,
            **names,
            **values,
        )

    def _numbers(self, parent: Block, block_type: str) -> str:
        """The child's section:subsection:unit: its position among same-type siblings for a
        level the parent is not inside, else the parent's numbers."""
        numbers = [int(n) for n in (parent.expected.numbers or "0:0:0").split(":")]
        if block_type in NUMBERED:
            level = NUMBERED.index(block_type)
            if numbers[level] == 0:
                same = sum(1 for k in parent.children if k[0] == block_type and k in self.blocks)
                numbers[level] = same + 1
                numbers[level + 1 :] = [0] * (2 - level)
        return ":".join(map(str, numbers))

    def add(
        self,
        parent: BlockKey,
        block_type: str,
        name: str | None,
        block_id: str | None = None,
        *,
        weight: Any = None,
        data: str | None = None,
        definition_stored: bool = True,
        expected_weight: str | None = None,
        settings: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> BlockKey:
        """A child of ``parent``; its expected context follows from the parent's."""
        up = self.blocks[parent]
        block = Block(
            block_type,
            block_id or self.new_id(),
            name,
            oid(self.rng),
            Expected(None),
            weight=weight,
            data=data,
            definition_stored=definition_stored,
            settings=settings or {},
            defaults=defaults or {},
        )
        block.expected = self._expected(block, up, self._numbers(up, block_type), expected_weight)
        up.children.append(block.key)
        return self._put(block)

    def problem(
        self,
        parent: BlockKey,
        name: str | None,
        responses: Sequence[str],
        *,
        weight: tuple[Any, str] | None = None,
        block_id: str | None = None,
        definition_stored: bool = True,
        extra_xml: str = "",
        settings: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> BlockKey:
        """A problem with the given response types; its expected weight follows the rule.

        Expected weight: the explicit weight's text when set; else the number of responses;
        None when the definition is missing (the weight is unknown, not zero).
        """
        body = "".join(RESPONSE_XML[r] for r in responses)
        xml = f"<problem><p>{name or 'Question'}</p>{body}{extra_xml}</problem>"
        if weight is not None:
            expected = weight[1]
        elif definition_stored:
            expected = str(len(responses))
        else:
            expected = None
        return self.add(
            parent,
            "problem",
            name,
            block_id,
            weight=None if weight is None else weight[0],
            data=xml,
            definition_stored=definition_stored,
            expected_weight=expected,
            settings=settings,
            defaults=defaults,
        )

    def orphan(
        self,
        block_type: str,
        name: str | None,
        block_id: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> BlockKey:
        """A block no other block names as a child: no parent, no ancestors, no numbers."""
        block = Block(
            block_type,
            block_id or self.new_id(),
            name,
            oid(self.rng),
            Expected(None),
            data="<html>lost</html>" if block_type == "html" else None,
            settings=settings or {},
        )
        block.expected = self._expected(block, None, None, None)
        return self._put(block)

    def link(self, parent: BlockKey, child: BlockKey) -> None:
        """An extra child entry that must change nothing: a cycle back to an ancestor (or
        the block itself), or a child that names no block."""
        self.blocks[parent].children.append(child)

    def build(self, *, published: bool = True) -> Course:
        return Course(
            self.org,
            self.course,
            self.run,
            self.blocks,
            self.root,
            draft=oid(self.rng),
            published=oid(self.rng) if published else None,
            active_version_id=oid(self.rng),
        )


def oid(rng: random.Random) -> ObjectId:
    """A deterministic ObjectId."""
    return ObjectId(rng.randbytes(12))


def _name(rng: random.Random, kind: str, n: int) -> str:
    if rng.random() < 0.25:
        return rng.choice(AWKWARD_NAMES)
    return f"{kind.capitalize()} {n}: {rng.choice(PLAIN_WORDS)}"


def _random_problem(b: CourseBuilder, parent: BlockKey, name: str) -> BlockKey:
    rng = b.rng
    responses = rng.sample(RESPONSE_TYPES, rng.choice((1, 1, 1, 2, 3)))
    weight = rng.choice(WEIGHTS) if rng.random() < 0.4 else None
    return b.problem(parent, name, responses, weight=weight)


ASSIGNMENT_TYPES = ("Homework", "Lab", "Midterm Exam", "Final Exam")


def _some_date(rng: random.Random) -> str:
    return studio_date(_EPOCH.replace(microsecond=0) + timedelta(days=rng.randint(0, 400)))


def _chapter_settings(rng: random.Random) -> dict[str, Any]:
    return {"start": _some_date(rng)} if rng.random() < 0.3 else {}


def _sequential_settings(rng: random.Random) -> dict[str, Any]:
    """As Studio sets them on subsections: graded with an assignment type and a due date."""
    settings: dict[str, Any] = {}
    if rng.random() < 0.6:
        settings.update(graded=True, format=rng.choice(ASSIGNMENT_TYPES), due=_some_date(rng))
    if rng.random() < 0.1:
        settings["hide_from_toc"] = True
    return settings


def _vertical_settings(rng: random.Random) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if rng.random() < 0.15:
        settings["due"] = _some_date(rng)  # a unit with its own due date
    if rng.random() < 0.1:
        settings["visible_to_staff_only"] = True
    return settings


def _fill(b: CourseBuilder, chapters: int) -> list[BlockKey]:
    """Chapters, sequentials, verticals and components; returns the verticals."""
    rng = b.rng
    verticals = []
    for c in range(chapters):
        name = _name(rng, "chapter", c + 1)
        chapter = b.add(b.root, "chapter", name, settings=_chapter_settings(rng))
        for s in range(rng.randint(1, 3)):
            name = _name(rng, "sequential", s + 1)
            sequential = b.add(chapter, "sequential", name, settings=_sequential_settings(rng))
            for v in range(rng.randint(1, 3)):
                name = _name(rng, "unit", v + 1)
                vertical = b.add(sequential, "vertical", name, settings=_vertical_settings(rng))
                verticals.append(vertical)
                for i in range(rng.randint(1, 4)):
                    kind = rng.choice(("problem", "problem", "html", "video"))
                    name = _name(rng, kind, i + 1)
                    if kind == "problem":
                        _random_problem(b, vertical, name)
                    else:
                        data = f"<p>{name}</p>" if kind == "html" else None
                        b.add(vertical, kind, name, data=data)
    return verticals


def _library_content(b: CourseBuilder, vertical: BlockKey, name: str) -> BlockKey:
    library = b.add(vertical, "library_content", name)
    for i in range(b.rng.randint(2, 3)):
        _random_problem(b, library, f"Library problem {i + 1}")
    # Copied from a library: the library's settings are the block's split "defaults".
    b.add(library, "html", "Library note", defaults={"visible_to_staff_only": True})
    return library


def _showcase(rng: random.Random) -> CourseBuilder:
    """The course holding every awkward case once, with fixed names."""
    b = CourseBuilder(
        rng,
        "PanoramaX",
        "DS101",
        "2024_T1",
        'Data "Science", 101\nIntro — 📊 \\ back',
        settings={"start": "2024-01-08T00:00:00Z"},
    )
    chapter = b.add(b.root, "chapter", "Chapter 1: Ünïcödé, \"quotes\" & 'more'")
    sequential = b.add(
        chapter,
        "sequential",
        "Line\nbreak\r\nsequential",
        settings={"graded": True, "format": "Homework", "due": "2024-02-01T23:59:00Z"},
    )
    vertical = b.add(sequential, "vertical", "Unit with emoji 🧪")
    b.problem(vertical, "Two responses", ["multiplechoiceresponse", "numericalresponse"])
    b.problem(vertical, "Explicit weight 2.5", ["stringresponse"], weight=(2.5, "2.5"))
    b.problem(vertical, "Explicit weight zero", ["choiceresponse"], weight=(0, "0"))
    b.problem(vertical, "Float weight 1.0", ["optionresponse", "customresponse"], weight=(1.0, "1"))
    b.problem(
        vertical,
        "Every response type",
        RESPONSE_TYPES,
    )
    b.problem(
        vertical,
        "Commented and escaped responses",
        ["formularesponse"],
        extra_xml=(
            "<!-- <stringresponse answer='old'/> <choiceresponse> -->"
            "<p>Type &lt;choiceresponse&gt; here</p><stringresponseish/>"
        ),
    )
    b.problem(vertical, "No responses", [])
    b.problem(vertical, "Missing definition", ["stringresponse"], definition_stored=False)
    b.problem(
        vertical,
        "Missing definition, explicit weight",
        ["stringresponse"],
        weight=(3, "3"),
        definition_stored=False,
    )
    b.add(vertical, "html", 'Back\\slash \\n html, "quoted"', data="<p>\\</p>")
    b.add(vertical, "video", None)  # no display name at all
    b.add(vertical, "discussion", "")  # an empty display name is not a missing one
    _library_content(b, vertical, 'Randomized, "library" content')
    second = b.add(
        sequential,
        "vertical",
        "Second unit",
        settings={"visible_to_staff_only": True, "due": "2024-02-08T23:59:00Z"},
    )
    b.add(second, "html", "Ελληνικά κείμενο")
    # A cycle back to an ancestor and to itself, and a child that names no block.
    b.link(second, sequential)
    b.link(second, second)
    b.link(second, ("problem", "does_not_exist"))
    # Its own only: the components inside are not hidden.
    awkward = b.add(sequential, "vertical", "Awkward names", settings={"hide_from_toc": True})
    for name in AWKWARD_NAMES:
        b.add(awkward, "html", name, data="<p>awkward</p>")
    b.orphan("html", "Orphan html, deleted from its unit")
    b.orphan("vertical", "Orphan vertical")
    _fill(b, 2)
    return b


def build(courses: int = 3, seed: int = 7) -> Modulestore:
    """The synthetic modulestore, in memory: ``courses`` random courses plus the fixed ones."""
    rng = random.Random(seed)
    showcase = _showcase(rng)
    result = [showcase.build()]
    # A rerun: same org and course code, another run; Studio keeps the block ids.
    # Definitions are shared too, so the same definition ids appear in two structures.
    rerun = CourseBuilder(rng, "PanoramaX", "DS101", "2025_T1", None)
    new_name = "Data Science 101 (2025)"
    rerun.blocks = {
        k: replace(
            b,
            children=list(b.children),
            expected=b.expected
            if b.expected.parent is None
            else replace(b.expected, course_name=new_name),
        )
        for k, b in showcase.blocks.items()
    }
    rerun.blocks[rerun.root].display_name = new_name
    result.append(rerun.build())
    for n in range(courses):
        org = rng.choice(ORGS)
        run = f"{2020 + n % 5}_T{1 + n % 3}"
        b = CourseBuilder(rng, org, f"C{n + 1:03d}", run, None, settings=_chapter_settings(rng))
        b.blocks[b.root].display_name = _name(rng, "course", n + 1)
        verticals = _fill(b, rng.randint(2, 4))
        _library_content(b, rng.choice(verticals), _name(rng, "library", 1))
        course = b.build()
        # Blocks added in Studio since the last publish: only in the draft branch.
        course.draft_only.append(
            Block("chapter", b.new_id(), "Draft only, never published", oid(rng), Expected(None))
        )
        result.append(course)
    # Never published: a draft branch only.
    unpublished = CourseBuilder(rng, "PanoramaX", "DRAFT1", "2026_T1", "Not published yet")
    unpublished.add(unpublished.root, "chapter", "Draft chapter")
    result.append(unpublished.build(published=False))
    # Only in the MySQL course index (MongoDB's active_versions no longer lists it).
    index_only = CourseBuilder(rng, "PanoramaX", "IDX1", "2023_T2", "Listed in MySQL only")
    _fill(index_only, 1)
    course = index_only.build()
    course.in_active_versions = False
    result.append(course)
    # A content library: never extracted. Real libraries have no published branch; this one
    # has one on purpose (in MongoDB and in the MySQL index), so only the rule "courses only"
    # keeps it out.
    library = CourseBuilder(rng, "PanoramaX", "LIB1", "library", "Shared library", "library")
    for i in range(3):
        _random_problem(library, library.root, f"Library bank problem {i + 1}")
    lib = library.build()
    lib.library = True
    result.append(lib)
    return Modulestore(result)


def generate(db: Any, courses: int = 3, seed: int = 7) -> Modulestore:
    """Build the synthetic modulestore and write it into ``db`` (a pymongo Database)."""
    store = build(courses, seed)
    write(db, store.courses)
    return store


def write(db: Any, courses: Iterable[Course]) -> None:
    """Insert active versions, structures and definitions of ``courses`` into ``db``."""
    active, structures, definitions = [], [], []
    for n, course in enumerate(courses):
        when = _EPOCH + timedelta(days=n)
        course.edited_on = when
        blocks = [_block_document(b, when) for b in course.blocks.values()]
        draft_blocks = blocks + [_block_document(b, when) for b in course.draft_only]
        if course.draft_only:
            root = next(d for d in draft_blocks if (d["block_type"], d["block_id"]) == course.root)
            root = dict(root, fields=dict(root["fields"]))
            root["fields"]["children"] = root["fields"].get("children", []) + [
                [b.block_type, b.block_id] for b in course.draft_only
            ]
            draft_blocks = [
                root if (d["block_type"], d["block_id"]) == course.root else d for d in draft_blocks
            ]
        versions: dict[str, ObjectId] = {}
        if course.library:
            versions["library"] = course.draft
        else:
            versions["draft-branch"] = course.draft
        structures.append(_structure(course, course.draft, draft_blocks, when))
        if course.published is not None:
            versions["published-branch"] = course.published
            structures.append(_structure(course, course.published, blocks, when))
        if course.in_active_versions:
            active.append(
                {
                    "_id": course.active_version_id,
                    "org": course.org,
                    "course": course.course,
                    "run": course.run,
                    "edited_by": 3,
                    "edited_on": when,
                    "last_update": when,
                    "versions": versions,
                    "schema_version": 1,
                    "search_targets": {"wiki_slug": f"{course.org}.{course.course}.{course.run}"},
                }
            )
        for block in [*course.blocks.values(), *course.draft_only]:
            if block.definition_stored:
                fields = {} if block.data is None else {"data": block.data}
                definitions.append(
                    {
                        "_id": block.definition,
                        "block_type": block.block_type,
                        "fields": fields,
                        "edit_info": {"edited_by": 3, "edited_on": when},
                        "schema_version": 1,
                    }
                )
    # Reruns share definitions: write each once.
    unique = list({d["_id"]: d for d in definitions}.values())
    if active:
        db["modulestore.active_versions"].insert_many(active)
    db["modulestore.structures"].insert_many(structures)
    db["modulestore.definitions"].insert_many(unique)


def _block_document(block: Block, when: datetime) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if block.display_name is not None:
        fields["display_name"] = block.display_name
    if block.children:
        fields["children"] = [list(c) for c in block.children]
    if block.weight is not None:
        fields["weight"] = block.weight
    fields.update(block.settings)
    return {
        "block_type": block.block_type,
        "block_id": block.block_id,
        "definition": block.definition,
        "fields": fields,
        "defaults": dict(block.defaults),
        "asides": [],
        "edit_info": {"edited_by": 3, "edited_on": when, "update_version": None},
    }


def _structure(
    course: Course, _id: ObjectId, blocks: list[dict[str, Any]], when: datetime
) -> dict[str, Any]:
    return {
        "_id": _id,
        "root": list(course.root),
        "previous_version": None,
        "original_version": _id,
        "edited_by": 3,
        "edited_on": when,
        "schema_version": 3,
        "blocks": blocks,
    }


# The Django model split_modulestore_django.SplitModulestoreCourseIndex (Nutmeg and later).
COURSE_INDEX_DDL = """CREATE TABLE IF NOT EXISTS `split_modulestore_django_splitmodulestorecourseindex` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `objectid` varchar(24) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `org` varchar(255) NOT NULL,
  `draft_version` varchar(24) NOT NULL,
  `published_version` varchar(255) NOT NULL,
  `library_version` varchar(24) NOT NULL,
  `wiki_slug` varchar(255) NOT NULL,
  `base_store` varchar(20) NOT NULL,
  `edited_on` datetime(6) NOT NULL,
  `last_update` datetime(6) NOT NULL,
  `edited_by_id` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `objectid` (`objectid`),
  UNIQUE KEY `course_id` (`course_id`),
  KEY `split_modulestore_django_splitmodulestorecourseindex_org` (`org`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"""


def write_course_index(conn: Any, courses: Iterable[Course]) -> int:
    """Create the MySQL course index table and list ``courses`` in it (a pymysql connection)."""
    rows = []
    for n, course in enumerate(courses):
        if not course.in_course_index:
            continue
        when = _EPOCH + timedelta(days=n, hours=1)
        rows.append(
            (
                str(course.active_version_id),
                course.course_id,
                course.org,
                "" if course.library else str(course.draft),
                str(course.published) if course.published else "",
                str(course.draft) if course.library else "",
                f"{course.org}.{course.course}.{course.run}",
                "mongodb",
                when,
                when,
                3,
            )
        )
    with conn.cursor() as cur:
        cur.execute(COURSE_INDEX_DDL)
        cur.executemany(
            "INSERT INTO split_modulestore_django_splitmodulestorecourseindex "
            "(objectid, course_id, org, draft_version, published_version, library_version, "
            "wiki_slug, base_store, edited_on, last_update, edited_by_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    conn.commit()
    return len(rows)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write a synthetic Open edX split modulestore into a MongoDB database."
    )
    parser.add_argument("--uri", default="mongodb://localhost:27017", help="MongoDB URI")
    parser.add_argument("--database", default="edxapp")
    parser.add_argument("--courses", type=int, default=3, help="random courses to add")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drop", action="store_true", help="empty the modulestore first")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (a real MongoDB)."""
    import pymongo

    args = _parse_args(argv)
    client: Any = pymongo.MongoClient(args.uri, serverSelectionTimeoutMS=10000)
    try:
        db = client[args.database]
        if args.drop:
            for name in ("active_versions", "structures", "definitions"):
                db[f"modulestore.{name}"].drop()
        store = generate(db, args.courses, args.seed)
    finally:
        client.close()
    blocks = sum(len(c.blocks) for c in store.extracted())
    print(f"{args.database}: {len(store.courses)} courses and libraries, {blocks} published blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
