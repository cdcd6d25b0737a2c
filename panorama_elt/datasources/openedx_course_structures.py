"""Open edX course structures: one row per block of each published course, from MongoDB.

Active versions come from the MySQL course index (Open edX Nutmeg and later) when MySQL is
configured, else from MongoDB's ``modulestore.active_versions``. Structures and problem
definitions are read from MongoDB in batches, and rows are produced one course at a time
(panorama_elt.datasources.course_blocks). A table partitioned by ``course_id`` keeps, as its
mark, the published version written for each course, and re-reads only courses whose
version changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pymongo
import pymongo.errors
from bson import ObjectId
from bson.errors import InvalidId

from panorama_elt.datasources.base import Datasource, Extraction
from panorama_elt.datasources.course_blocks import (
    COLUMN_TYPES,
    COLUMNS,
    SETTINGS,
    ActiveCourse,
    count_responses,
    course_rows,
    explicit_weight,
)
from panorama_elt.datasources.mysql import MySQLDatasource
from panorama_elt.datasources.source_settings import CourseStructuresSettings
from panorama_elt.errors import SourceError
from panorama_elt.settings import DatasourceSettings, MongoSettings, TableSettings

log = logging.getLogger("panorama_elt")

TABLE = "course_structures"
COURSE_INDEX_TABLE = "split_modulestore_django_splitmodulestorecourseindex"
ACTIVE_VERSIONS = "modulestore.active_versions"
STRUCTURES = "modulestore.structures"
DEFINITIONS = "modulestore.definitions"
PUBLISHED_BRANCH = "published-branch"

# Structures are large (every block of a course): few at a time. Definitions are read only
# for problems without an explicit weight, and only their XML is kept long enough to count.
STRUCTURE_BATCH = 20
DEFINITION_BATCH = 500
# Existence checks ask for ids only; rows go to the writer in lists of this many.
ID_BATCH = 1000
ROW_BATCH = 1000

_STRUCTURE_PROJECTION = {
    "root": 1,
    "blocks.block_type": 1,
    "blocks.block_id": 1,
    "blocks.definition": 1,
    "blocks.fields.display_name": 1,
    "blocks.fields.children": 1,
    "blocks.fields.weight": 1,
    "edited_on": 1,
    **{f"blocks.{where}.{name}": 1 for where in ("fields", "defaults") for name in SETTINGS},
}
_AUTH_FAILED = 18
_UNAUTHORIZED = 13

# Tests replace this with mongomock.MongoClient; the same pymongo calls run against it.
mongo_client_factory: Callable[..., Any] = pymongo.MongoClient


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

    def __init__(self, settings: DatasourceSettings) -> None:
        super().__init__(settings)
        if settings.mongodb is None:
            raise SourceError(f"datasource {settings.name}: no MongoDB settings")
        self.mongo = settings.mongodb
        self._client: Any = None
        # The MySQL course index is read through the MySQL datasource (same connection
        # handling and error messages).
        self._mysql = MySQLDatasource(settings) if settings.mysql is not None else None
        self.where = f"datasource {settings.name} ({public_address(self.mongo)})"
        self.limits = settings.block(CourseStructuresSettings) or CourseStructuresSettings()

    # --- connections -------------------------------------------------------------------

    @property
    def db(self) -> Any:
        """The modulestore database (the client connects lazily, on the first query)."""
        if self._client is None:
            args, kwargs = client_arguments(self.mongo)
            with self._mongo_errors():
                self._client = mongo_client_factory(*args, **kwargs)
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
        """The fixed columns of course_structures: text, numbers, booleans (1/0) and dates."""
        columns = [(c, COLUMN_TYPES.get(c, "varchar")) for c in COLUMNS]
        return {t: columns for t in tables if t == TABLE}

    def uses_mark(self, table: TableSettings) -> bool:
        """Partitioned by course_id: the mark holds the published version of each course."""
        return bool(table.partition_fields)

    # --- extraction --------------------------------------------------------------------

    def extract(self, table: TableSettings, *, force: bool, mark: str | None) -> Extraction:
        if table.name != TABLE:
            raise SourceError(
                f"{table.name}: {self.settings.type} datasources have one table, {TABLE!r}"
            )
        by_course = _partitioned_by_course(table)
        picks = ([COLUMNS.index("course_id")] if by_course else []) + self._columns(table)
        courses = self.active_courses()  # small, and fails early when a server is down
        previous = versions_from_mark(mark) if by_course and not force else None
        plan = plan_reads(courses, previous)
        present = self._existing_structures([c.published for c in plan.read])
        missing = [c for c in plan.read if c.published not in present]
        self._check_missing(table, missing, courses)
        read = [c for c in plan.read if c.published in present]
        new_mark = None
        if by_course:
            versions = dict(plan.kept)
            for course in missing:
                # Its new structure is not there yet: it keeps its rows and its old version,
                # so the next run tries again.
                if previous and course.course_id in previous:
                    versions[course.course_id] = previous[course.course_id]
            versions.update({c.course_id: str(c.published) for c in read})
            new_mark = versions_mark(versions)
        counts = {
            "courses_read": len(read),
            "courses_skipped": len(plan.kept),
            "courses_removed": len(plan.removed),
            "courses_missing": len(missing),
        }
        log.info(
            "%s: %d published courses: %d to read, %d unchanged, %d removed, %d missing",
            table.name,
            len(courses),
            *counts.values(),
        )
        return Extraction(
            self._batches(read, picks),
            full=previous is None,
            mark=new_mark,
            removed=[(course_id,) for course_id in plan.removed],
            counts=counts,
        )

    def _check_missing(
        self, table: TableSettings, missing: list[ActiveCourse], courses: list[ActiveCourse]
    ) -> None:
        """Fail when too many published courses have no structure (replica lag, or the wrong
        database); under the threshold, each missing course is a warning and is left out."""
        if not courses:
            with self._mongo_errors():
                anything = self.db[STRUCTURES].find_one({}, {"_id": 1})
            if anything is None:
                raise SourceError(
                    f"{table.name}: {self.where}: no published course and no structure in "
                    f"{STRUCTURES} (check mongodb_database)"
                )
            return
        if not missing:
            return
        limit = self.limits.max_missing_percent
        share = 100 * len(missing) / len(courses)
        few = ", ".join(c.course_id for c in missing[:3])
        if len(missing) > 3:
            few += f" and {len(missing) - 3} more"
        if share > limit:
            raise SourceError(
                f"{table.name}: {len(missing)} of {len(courses)} published courses "
                f"({share:.0f}%) have no structure in {STRUCTURES} of {self.where}, more than "
                f"max_missing_structures_percent ({limit}%): {few} (replica lag, or the wrong "
                "mongodb_database?)"
            )
        for course in missing:
            log.warning(
                "%s: %s: published structure %s not found in %s; left out of this run",
                table.name,
                course.course_id,
                course.published,
                STRUCTURES,
            )

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

    def _batches(
        self, courses: Sequence[ActiveCourse], picks: list[int]
    ) -> Iterator[list[list[Any]]]:
        """Lists of up to ROW_BATCH rows, each the ``picks`` columns of one block."""
        batch: list[list[Any]] = []
        for row in self.rows(courses):
            batch.append([row[i] for i in picks])
            if len(batch) == ROW_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def rows(self, courses: Sequence[ActiveCourse]) -> Iterator[tuple[str | None, ...]]:
        """Every column of every block, one batch of structures at a time."""
        for start in range(0, len(courses), STRUCTURE_BATCH):
            batch = courses[start : start + STRUCTURE_BATCH]
            structures = self._structures([c.published for c in batch])
            weights = self._response_counts(structures.values())
            for course in batch:
                structure = structures.pop(course.published, None)
                if structure is None:
                    # It was there when the run started: structures are never rewritten.
                    raise SourceError(
                        f"{TABLE}: {course.course_id}: published structure {course.published} "
                        f"disappeared from {STRUCTURES} during the run"
                    )
                yield from course_rows(course, structure, weights)

    def _existing_structures(self, ids: list[ObjectId]) -> set[ObjectId]:
        """Which of ``ids`` are in the structures collection (ids only, ID_BATCH at a time)."""
        found: set[ObjectId] = set()
        for start in range(0, len(ids), ID_BATCH):
            chunk = ids[start : start + ID_BATCH]
            with self._mongo_errors():
                cursor = self.db[STRUCTURES].find(
                    {"_id": {"$in": chunk}}, {"_id": 1}, batch_size=len(chunk)
                )
                found.update(doc["_id"] for doc in cursor)
        return found

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


@dataclass(frozen=True)
class ReadPlan:
    """What one run does with each published course."""

    read: list[ActiveCourse]  # new, or published again since the previous run
    kept: dict[str, str]  # course id -> version: unchanged, its rows stay as they are
    removed: list[str]  # in the previous run, no longer published (deleted or unpublished)


def plan_reads(courses: Sequence[ActiveCourse], previous: dict[str, str] | None) -> ReadPlan:
    """Every course when there is no previous state, else only the changed and new ones."""
    if previous is None:
        return ReadPlan(list(courses), {}, [])
    read = [c for c in courses if previous.get(c.course_id) != str(c.published)]
    kept = {c.course_id: str(c.published) for c in courses if c not in read}
    published = {c.course_id for c in courses}
    return ReadPlan(read, kept, sorted(set(previous) - published))


def versions_mark(versions: dict[str, str]) -> str:
    """The mark of a course-partitioned table: the published version written per course."""
    return json.dumps({"published_versions": dict(sorted(versions.items()))}, separators=(",", ":"))


def versions_from_mark(mark: str | None) -> dict[str, str] | None:
    """The versions of a mark; None (read everything) when there is none or it is unreadable."""
    if mark is None:
        return None
    try:
        versions = json.loads(mark)["published_versions"]
        if isinstance(versions, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
        ):
            return versions
    except (ValueError, TypeError, KeyError):
        pass
    log.warning(
        "%s: ignoring an unreadable state of published versions; reading every course", TABLE
    )
    return None


def _partitioned_by_course(table: TableSettings) -> bool:
    """True when the table is partitioned by course_id, its only possible field partition."""
    if table.partition_fields not in ((), ("course_id",)):
        raise SourceError(
            f"{table.name}: course structures can only be partitioned by course_id "
            "(partitions: {partition_fields: [course_id]})"
        )
    if table.partitions is not None and (
        table.partitions.timestamp_field or table.partitions.interval
    ):
        raise SourceError(
            f"{table.name}: course structures take no timestamp_field or interval: changed "
            "courses are found by their published version"
        )
    return bool(table.partition_fields)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
