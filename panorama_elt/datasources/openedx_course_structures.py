"""Open edX course structures: one row per block of each published course, from MongoDB.

Active versions come from the MySQL course index (Open edX Nutmeg and later) when MySQL is
configured, else from MongoDB's ``modulestore.active_versions``. Structures and problem
definitions are read from MongoDB in batches, and rows are produced one course at a time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pymongo
import pymongo.errors
from bson import ObjectId
from bson.errors import InvalidId

from panorama_elt.datasources.base import Datasource, Extraction
from panorama_elt.datasources.mysql import MySQLDatasource
from panorama_elt.errors import SourceError
from panorama_elt.rows import batched
from panorama_elt.settings import DatasourceSettings, MongoSettings, TableSettings

log = logging.getLogger("panorama_elt")

TABLE = "course_structures"
COLUMNS = (
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
)
COURSE_INDEX_TABLE = "split_modulestore_django_splitmodulestorecourseindex"
ACTIVE_VERSIONS = "modulestore.active_versions"
STRUCTURES = "modulestore.structures"
DEFINITIONS = "modulestore.definitions"
PUBLISHED_BRANCH = "published-branch"

# Structures are large (every block of a course): few at a time. Definitions are read only
# for problems without an explicit weight, and only their XML is kept long enough to count.
STRUCTURE_BATCH = 20
DEFINITION_BATCH = 500

# Block types with their own ancestor column; everything else is a component.
ANCESTOR_TYPES = ("chapter", "sequential", "vertical", "library_content")
CONTAINER_TYPES = frozenset(("course", *ANCESTOR_TYPES))
RESPONSE_TAGS = (
    "multiplechoiceresponse",
    "choiceresponse",
    "numericalresponse",
    "stringresponse",
    "optionresponse",
    "customresponse",
    "formularesponse",
    "symbolicresponse",
    "schematicresponse",
    "imageresponse",
    "jsmeresponse",
    "coderesponse",
    "externalresponse",
    "annotationresponse",
    "choicetextresponse",
)
_RESPONSE = re.compile(r"<(?:" + "|".join(RESPONSE_TAGS) + r")(?=[\s/>])")
_XML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)

_STRUCTURE_PROJECTION = {
    "root": 1,
    "blocks.block_type": 1,
    "blocks.block_id": 1,
    "blocks.definition": 1,
    "blocks.fields.display_name": 1,
    "blocks.fields.children": 1,
    "blocks.fields.weight": 1,
}
_AUTH_FAILED = 18
_UNAUTHORIZED = 13

# Tests replace this with mongomock.MongoClient; the same pymongo calls run against it.
mongo_client_factory: Callable[..., Any] = pymongo.MongoClient

BlockKey = tuple[str, str]


@dataclass(frozen=True)
class ActiveCourse:
    """A course and the structure of its published branch."""

    course_id: str
    org: str
    course: str
    run: str
    published: ObjectId


def course_location(course: ActiveCourse, block_type: str, block_id: str) -> str:
    """The usage key of a block; the course block is named by the course id itself."""
    if block_type == "course":
        return course.course_id
    return f"block-v1:{course.org}+{course.course}+{course.run}+type@{block_type}+block@{block_id}"


def count_responses(xml: str | None) -> int:
    """Response tags in a problem's XML (commented-out ones do not count)."""
    if not xml:
        return 0
    return len(_RESPONSE.findall(_XML_COMMENT.sub("", xml)))


def number_text(value: Any) -> str | None:
    """A weight as plain decimal text ('1', '2.5', '0.0001'); None when it is not a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = repr(value)
    else:
        text = str(value).strip()  # strings and BSON Decimal128
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    out = format(number, "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return "0" if out in ("-0", "") else out


def parse_course_id(course_id: str) -> tuple[str, str, str] | None:
    """(org, course, run) of a ``course-v1:`` id; None for anything else (libraries...)."""
    prefix = "course-v1:"
    if not course_id.startswith(prefix):
        return None
    parts = course_id[len(prefix) :].split("+")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def client_arguments(s: MongoSettings) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments of MongoClient for these settings."""
    timeout_ms = int(s.timeout_seconds * 1000)
    options: dict[str, Any] = {
        "readPreference": "secondaryPreferred",
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "appname": "panorama-elt",
        # Beside a URI too: the CA file is a path on this machine, not part of the address.
        **tls_options(s),
    }
    if s.uri:
        return (s.uri,), options
    options.update(host=s.host, port=s.port)
    if s.username:
        # Open edX authenticates against its own database unless told otherwise.
        options.update(
            username=s.username, password=s.password or "", authSource=s.auth_source or s.database
        )
    if s.replica_set:
        options["replicaSet"] = s.replica_set
    return (), options


def tls_options(s: MongoSettings) -> dict[str, Any]:
    """MongoClient TLS options: the CA file and the host name check (on by default)."""
    options: dict[str, Any] = {}
    if s.tls:
        options["tls"] = True
    if s.tls_ca_file is not None:
        options["tlsCAFile"] = str(s.tls_ca_file)
    if s.tls_allow_invalid_hostnames:
        options["tlsAllowInvalidHostnames"] = True
    return options


def public_address(s: MongoSettings) -> str:
    """Where the MongoDB is, without credentials or URI options."""
    if not s.uri:
        return f"mongodb://{s.host}:{s.port}/{s.database}"
    scheme, _, rest = s.uri.partition("://")
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{hosts}/{s.database}"


class CourseStructuresDatasource(Datasource):
    """The ``course_structures`` table of an Open edX split modulestore."""

    def __init__(
        self, settings: DatasourceSettings, client_factory: Callable[..., Any] | None = None
    ) -> None:
        super().__init__(settings)
        if settings.mongodb is None:
            raise SourceError(f"datasource {settings.name}: no MongoDB settings")
        self.mongo = settings.mongodb
        self._client_factory = client_factory
        self._client: Any = None
        # The MySQL course index is read through the MySQL datasource (same connection
        # handling and error messages).
        self._mysql = MySQLDatasource(settings) if settings.mysql is not None else None
        self.where = f"datasource {settings.name} ({public_address(self.mongo)})"

    # --- connections -------------------------------------------------------------------

    @property
    def db(self) -> Any:
        """The modulestore database (the client connects lazily, on the first query)."""
        if self._client is None:
            factory = self._client_factory or mongo_client_factory
            args, kwargs = client_arguments(self.mongo)
            with self._mongo_errors():
                self._client = factory(*args, **kwargs)
        return self._client[self.mongo.database]

    @contextlib.contextmanager
    def _mongo_errors(self) -> Iterator[None]:
        """Turn driver errors into one SourceError line naming the datasource and host."""
        try:
            yield
        except pymongo.errors.OperationFailure as exc:
            if exc.code == _AUTH_FAILED:
                raise SourceError(
                    f"{self.where}: authentication failed for user {self.mongo.username!r} "
                    "(check mongodb_username, mongodb_password and mongodb_auth_source)"
                ) from None
            if exc.code == _UNAUTHORIZED:
                raise SourceError(
                    f"{self.where}: user {self.mongo.username!r} may not read database "
                    f"{self.mongo.database!r} ({self._reason(exc)})"
                ) from None
            raise SourceError(f"{self.where}: {self._reason(exc)}") from None
        except pymongo.errors.ConnectionFailure as exc:
            raise SourceError(f"{self.where}: cannot connect ({self._reason(exc)})") from None
        except pymongo.errors.ConfigurationError as exc:
            raise SourceError(f"{self.where}: bad MongoDB settings ({self._reason(exc)})") from None
        except pymongo.errors.PyMongoError as exc:
            raise SourceError(f"{self.where}: {self._reason(exc)}") from None

    def _reason(self, exc: BaseException) -> str:
        """The driver's message on one line, without topology dumps or secrets."""
        text = str(exc).split(", Timeout:", 1)[0]
        text = re.sub(r" \(configured timeouts:[^)]*\)", "", text)
        text = " ".join(text.split())[:300]
        for secret in (self.mongo.password, self.mongo.uri):
            if secret:
                text = text.replace(secret, "***")
        return text or type(exc).__name__

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken client
                client.close()
        if self._mysql is not None:
            self._mysql.close()

    def test_connection(self) -> str:
        db = self.db
        with self._mongo_errors():
            db[STRUCTURES].find_one({}, {"_id": 1})
            if self._mysql is None:
                count = db[ACTIVE_VERSIONS].count_documents({})
        detail = f"MongoDB at {public_address(self.mongo)}: structures answer"
        if self._mysql is None:
            return f"{detail}, {count} active versions"
        ((rows,),) = self._course_index_query(f"SELECT COUNT(*) FROM `{COURSE_INDEX_TABLE}`")
        s = self._mysql.mysql
        return (
            f"{detail}; MySQL {s.host}:{s.port}/{s.database}: {rows} rows in {COURSE_INDEX_TABLE}"
        )

    def describe(self, tables: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """The fixed columns of course_structures: text, and weight as a number."""
        columns = [(c, "double" if c == "weight" else "varchar") for c in COLUMNS]
        return {t: columns for t in tables if t == TABLE}

    # --- extraction --------------------------------------------------------------------

    def extract(self, table: TableSettings, *, force: bool, mark: str | None) -> Extraction:
        if table.name != TABLE:
            raise SourceError(
                f"{table.name}: {self.settings.type} datasources have one table, {TABLE!r}"
            )
        if table.partition_fields:
            raise SourceError(f"{table.name}: course structures are not partitioned by field")
        picks = self._columns(table)
        courses = self.active_courses()  # small, and fails early when a server is down
        rows = ([row[i] for i in picks] for row in self.rows(courses))
        return Extraction(batched(rows), full=True)

    def _columns(self, table: TableSettings) -> list[int]:
        """Index in COLUMNS of each non-constant file field, in settings order."""
        picks = []
        for f in table.file_fields:
            if f.constant:
                continue
            if f.name not in COLUMNS:
                raise SourceError(
                    f"{table.name}: unknown field {f.name!r} in the settings "
                    f"(course_structures has: {', '.join(COLUMNS)})"
                )
            picks.append(COLUMNS.index(f.name))
        return picks

    def active_courses(self) -> list[ActiveCourse]:
        """Published courses, sorted by id; from the MySQL course index when configured."""
        found = self._index_courses() if self._mysql is not None else self._mongo_courses()
        return sorted(found, key=lambda c: c.course_id)

    def _mongo_courses(self) -> list[ActiveCourse]:
        courses = []
        with self._mongo_errors():
            cursor = self.db[ACTIVE_VERSIONS].find(
                {}, {"org": 1, "course": 1, "run": 1, "versions": 1}
            )
            for doc in cursor:
                org, code, run = (str(doc.get(k) or "") for k in ("org", "course", "run"))
                versions = doc.get("versions") or {}
                if run == "library" or "library" in versions:
                    continue  # a content library (library-v1:), not a course
                published = versions.get(PUBLISHED_BRANCH)
                if not (org and code and run and isinstance(published, ObjectId)):
                    continue
                course_id = f"course-v1:{org}+{code}+{run}"
                courses.append(ActiveCourse(course_id, org, code, run, published))
        return courses

    def _index_courses(self) -> list[ActiveCourse]:
        rows = self._course_index_query(
            f"SELECT course_id, published_version FROM `{COURSE_INDEX_TABLE}`"
        )
        courses = []
        for raw_id, raw_version in rows:
            course_id, version = _text(raw_id), _text(raw_version)
            parts = parse_course_id(course_id)
            if parts is None or not version:
                continue  # a library, or a course never published
            try:
                published = ObjectId(version)
            except (InvalidId, TypeError):
                log.warning("%s: %s has a bad published_version %r", TABLE, course_id, version)
                continue
            courses.append(ActiveCourse(course_id, *parts, published))
        return courses

    def _course_index_query(self, sql: str) -> list[tuple[Any, ...]]:
        assert self._mysql is not None
        try:
            return self._mysql.query(sql, [])
        except SourceError as exc:
            if "(MySQL error 1146)" in str(exc):
                raise SourceError(
                    f"{exc} (the course index table exists from Open edX Nutmeg on; for older "
                    "releases leave mysql_host and mysql_username empty to read active "
                    "versions from MongoDB)"
                ) from None
            raise

    def rows(self, courses: Sequence[ActiveCourse]) -> Iterator[tuple[str | None, ...]]:
        """Every column of every block, one batch of structures at a time."""
        for start in range(0, len(courses), STRUCTURE_BATCH):
            batch = courses[start : start + STRUCTURE_BATCH]
            structures = self._structures([c.published for c in batch])
            weights = self._response_counts(structures.values())
            for course in batch:
                structure = structures.pop(course.published, None)
                if structure is None:
                    log.warning(
                        "%s: %s: published structure %s not found in %s",
                        TABLE,
                        course.course_id,
                        course.published,
                        STRUCTURES,
                    )
                    continue
                yield from course_rows(course, structure, weights)

    def _structures(self, ids: list[ObjectId]) -> dict[ObjectId, dict[str, Any]]:
        with self._mongo_errors():
            cursor = self.db[STRUCTURES].find(
                {"_id": {"$in": ids}}, _STRUCTURE_PROJECTION, batch_size=len(ids)
            )
            return {doc["_id"]: doc for doc in cursor}

    def _response_counts(self, structures: Any) -> dict[Any, int]:
        """Response tags per definition, for problems without an explicit weight."""
        wanted: dict[Any, None] = {}
        for structure in structures:
            for block in structure.get("blocks") or ():
                if (
                    block.get("block_type") == "problem"
                    and explicit_weight(block) is None
                    and block.get("definition") is not None
                ):
                    wanted[block["definition"]] = None
        ids = list(wanted)
        counts: dict[Any, int] = {}
        for start in range(0, len(ids), DEFINITION_BATCH):
            chunk = ids[start : start + DEFINITION_BATCH]
            with self._mongo_errors():
                cursor = self.db[DEFINITIONS].find(
                    {"_id": {"$in": chunk}}, {"fields.data": 1}, batch_size=len(chunk)
                )
                for doc in cursor:
                    data = (doc.get("fields") or {}).get("data")
                    counts[doc["_id"]] = count_responses(data if isinstance(data, str) else None)
        return counts


def explicit_weight(block: dict[str, Any]) -> str | None:
    """The weight set on a block (fields.weight) as text, if it is a number."""
    return number_text((block.get("fields") or {}).get("weight"))


def course_rows(
    course: ActiveCourse, structure: dict[str, Any], response_counts: dict[Any, int]
) -> Iterator[tuple[str | None, ...]]:
    """One row (all COLUMNS) per block of one course structure.

    The walk from the root is iterative and visits each block once, so deep trees, cycles
    and children that name no block are harmless. Blocks not reachable from the root
    (orphans) follow, with no parent. A block of an ancestor type (chapter, sequential,
    vertical, library_content) fills its own column with its own name.
    """
    blocks: dict[BlockKey, dict[str, Any]] = {}
    for block in structure.get("blocks") or ():
        key = (str(block.get("block_type")), str(block.get("block_id")))
        blocks.setdefault(key, block)
    root = _root_key(structure, blocks)
    course_name = _display_name(blocks[root]) if root else None
    head = (course.course_id, course.org, course.course, course.run)
    empty: tuple[str | None, ...] = (None,) * len(ANCESTOR_TYPES)

    def row(key: BlockKey, parent: str | None, ancestors: tuple[str | None, ...]) -> tuple:
        block = blocks[key]
        block_type, block_id = key
        name = _display_name(block)
        weight = None
        if block_type == "problem":
            weight = explicit_weight(block)
            if weight is None:
                count = response_counts.get(block.get("definition"))
                weight = None if count is None else str(count)  # no definition: unknown
        component = name if block_type not in CONTAINER_TYPES else None
        location = course_location(course, block_type, block_id)
        return (
            *(location, *head, parent, block_type, block_id, name, course_name),
            *(*ancestors, component, weight),
        )

    seen: set[BlockKey] = set()
    if root is not None:
        # (block, parent location, ancestor names), children pushed in reverse so the
        # rows come out in course order (depth first, pre-order).
        stack: list[tuple[BlockKey, str | None, tuple[str | None, ...]]] = [(root, None, empty)]
        seen.add(root)
        while stack:
            key, parent, inherited = stack.pop()
            block = blocks[key]
            ancestors = inherited
            if key[0] in ANCESTOR_TYPES:
                i = ANCESTOR_TYPES.index(key[0])
                ancestors = (*inherited[:i], _display_name(block), *inherited[i + 1 :])
            yield row(key, parent, ancestors)
            location = course_location(course, *key)
            for child in reversed(_children(block)):
                if child in blocks and child not in seen:
                    seen.add(child)
                    stack.append((child, location, ancestors))
    for key, block in blocks.items():
        if key not in seen:
            own = tuple(_display_name(block) if key[0] == t else None for t in ANCESTOR_TYPES)
            yield row(key, None, own)


def _root_key(structure: dict[str, Any], blocks: dict[BlockKey, dict[str, Any]]) -> BlockKey | None:
    root = structure.get("root")
    if isinstance(root, (list, tuple)) and len(root) == 2:
        key = (str(root[0]), str(root[1]))
        if key in blocks:
            return key
    return next((k for k in blocks if k[0] == "course"), None)


def _children(block: dict[str, Any]) -> list[BlockKey]:
    children = (block.get("fields") or {}).get("children") or ()
    return [
        (str(c[0]), str(c[1])) for c in children if isinstance(c, (list, tuple)) and len(c) == 2
    ]


def _display_name(block: dict[str, Any]) -> str | None:
    name = (block.get("fields") or {}).get("display_name")
    return None if name is None else str(name)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
