"""Deterministic synthetic Open edX split modulestore (MongoDB), and its MySQL course index.

``generate(db)`` fills any pymongo-compatible database (mongomock in tests, a real MongoDB for
the demo) with courses, a rerun, a content library, a draft-only course and the awkward cases
the course structures datasource must survive: display names with quotes, commas, line
breaks, emoji and backslashes, an orphan block, a cycle, a child that names no block, and a
problem whose definition is missing. Every block carries the answer a correct extraction must
give (``Block.expected``), worked out while the tree is built, top down, so tests need not
walk the structure themselves.
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


@dataclass(frozen=True)
class Expected:
    """What a correct extraction reports for a block (names of the block's context)."""

    parent: BlockKey | None
    chapter: str | None = None
    sequential: str | None = None
    vertical: str | None = None
    library: str | None = None
    weight: str | None = None


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

    @property
    def key(self) -> BlockKey:
        return (self.block_type, self.block_id)


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
    ) -> None:
        self.rng = rng
        self.org, self.course, self.run = org, course, run
        self.blocks: dict[BlockKey, Block] = {}
        self.root = (root_type, root_type)
        self._put(Block(root_type, root_type, name, oid(rng), Expected(parent=None)))

    def _put(self, block: Block) -> BlockKey:
        if block.key in self.blocks:
            raise ValueError(f"duplicate block {block.key}")
        self.blocks[block.key] = block
        return block.key

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

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
    ) -> BlockKey:
        """A child of ``parent``; its ancestor names follow from the parent's."""
        up = self.blocks[parent].expected
        context = {
            "chapter": up.chapter,
            "sequential": up.sequential,
            "vertical": up.vertical,
            "library": up.library,
        }
        column = "library" if block_type == "library_content" else block_type
        if column in context:
            context[column] = name  # a block of an ancestor type names itself
        block = Block(
            block_type,
            block_id or self.new_id(),
            name,
            oid(self.rng),
            Expected(parent=parent, weight=expected_weight, **context),
            weight=weight,
            data=data,
            definition_stored=definition_stored,
        )
        self.blocks[parent].children.append(block.key)
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
        )

    def orphan(self, block_type: str, name: str | None, block_id: str | None = None) -> BlockKey:
        """A block no other block names as a child: no parent, no ancestors."""
        own = "library" if block_type == "library_content" else block_type
        context = {own: name} if own in ("chapter", "sequential", "vertical", "library") else {}
        block = Block(
            block_type,
            block_id or self.new_id(),
            name,
            oid(self.rng),
            Expected(parent=None, **context),
            data="<html>lost</html>" if block_type == "html" else None,
        )
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


def _fill(b: CourseBuilder, chapters: int) -> list[BlockKey]:
    """Chapters, sequentials, verticals and components; returns the verticals."""
    rng = b.rng
    verticals = []
    for c in range(chapters):
        chapter = b.add(b.root, "chapter", _name(rng, "chapter", c + 1))
        for s in range(rng.randint(1, 3)):
            sequential = b.add(chapter, "sequential", _name(rng, "sequential", s + 1))
            for v in range(rng.randint(1, 3)):
                vertical = b.add(sequential, "vertical", _name(rng, "unit", v + 1))
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
    b.add(library, "html", "Library note")
    return library


def _showcase(rng: random.Random) -> CourseBuilder:
    """The course holding every awkward case once, with fixed names."""
    b = CourseBuilder(
        rng, "PanoramaX", "DS101", "2024_T1", 'Data "Science", 101\nIntro — 📊 \\ back'
    )
    chapter = b.add(b.root, "chapter", "Chapter 1: Ünïcödé, \"quotes\" & 'more'")
    sequential = b.add(chapter, "sequential", "Line\nbreak\r\nsequential")
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
    second = b.add(sequential, "vertical", "Second unit")
    b.add(second, "html", "Ελληνικά κείμενο")
    # A cycle back to an ancestor and to itself, and a child that names no block.
    b.link(second, sequential)
    b.link(second, second)
    b.link(second, ("problem", "does_not_exist"))
    awkward = b.add(sequential, "vertical", "Awkward names")
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
    rerun.blocks = {k: replace(b, children=list(b.children)) for k, b in showcase.blocks.items()}
    rerun.blocks[rerun.root].display_name = "Data Science 101 (2025)"
    result.append(rerun.build())
    for n in range(courses):
        org = rng.choice(ORGS)
        b = CourseBuilder(rng, org, f"C{n + 1:03d}", f"{2020 + n % 5}_T{1 + n % 3}", None)
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
    return {
        "block_type": block.block_type,
        "block_id": block.block_id,
        "definition": block.definition,
        "fields": fields,
        "defaults": {},
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
