"""The rows of one course structure: one per block, with the columns of ``course_structures``.

The first 16 columns hold what the original panorama-elt wrote (its ``fill_parents`` walk): an
ancestor column names an *ancestor* of that type, never the block itself, and an orphan (not
reachable from the course root) has no parent and no ancestor columns. The columns after them
place the block in the course (order and Aspects-style numbers) and carry the settings Open
edX resolves for it (XBlock inheritance), so grades can be computed from one join.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bson import ObjectId

# The original's 16 columns first (old queries keep working), then the new ones.
ORIGINAL_COLUMNS = (
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
COLUMNS = (
    *ORIGINAL_COLUMNS,
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
)
# Types for set-tables-fields and the template: booleans as 1/0, dates in UTC.
COLUMN_TYPES = {
    "weight": "double",
    "block_order": "int",
    "graded": "boolean",
    "visible_to_staff_only": "boolean",
    "hide_from_toc": "boolean",
    "due": "datetime",
    "start": "datetime",
    "published_on": "datetime",
}

# Block types named in an ancestor column (course -> course_name, library_content -> library).
ANCESTOR_TYPES = ("course", "chapter", "sequential", "vertical", "library_content")
# Levels numbered as Aspects numbers them (section:subsection:unit).
NUMBERED_TYPES = ("chapter", "sequential", "vertical")

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

# Settings-scope fields behind the new columns. InheritanceMixin fields reach descendants
# that set none; format and hide_from_toc are the block's own (LmsBlockMixin).
INHERITED = ("graded", "start", "due", "visible_to_staff_only")
SETTINGS = (*INHERITED, "format", "hide_from_toc")
# edx-platform's DEFAULT_START_DATE: the start of a course (and block) that sets none.
DEFAULT_START = "2030-01-01 00:00:00"
# What a block that sets nothing and inherits nothing gets (as written in the rows).
_FIELD_DEFAULTS: dict[str, str | None] = {
    "graded": "0",
    "start": DEFAULT_START,
    "due": None,
    "visible_to_staff_only": "0",
}

BlockKey = tuple[str, str]
_UNSET = object()  # not inside a subsection (as opposed to one whose format is None)


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


def explicit_weight(block: dict[str, Any]) -> str | None:
    """The weight set on a block (fields.weight) as text, if it is a number."""
    return number_text((block.get("fields") or {}).get("weight"))


def date_text(value: Any) -> str | None:
    """A date setting as UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]', read as XBlock's Date field
    reads it: ISO text (no zone = UTC), epoch milliseconds or a datetime; None otherwise."""
    when: datetime | None = None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str) and value.strip():
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            when = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.isoformat(sep=" ", timespec="microseconds" if when.microsecond else "seconds")


def boolean_text(value: Any) -> str:
    """A boolean setting as 1 or 0, read as XBlock's Boolean field reads it ('true' is true)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        return "1" if value.lower() == "true" else "0"
    return "1" if value else "0"


def course_rows(
    course: ActiveCourse, structure: dict[str, Any], response_counts: dict[Any, int]
) -> Iterator[tuple[str | None, ...]]:
    """One row (all COLUMNS) per block of one course structure, in course order.

    The walk from the root is depth first in children order, iterative, and visits each block
    once, so deep trees, cycles and children that name no block are harmless. Blocks not
    reachable from the root (orphans) follow, each on its own: no parent, no ancestors, no
    position, nothing inherited.
    """
    blocks: dict[BlockKey, dict[str, Any]] = {}
    for block in structure.get("blocks") or ():
        key = (str(block.get("block_type")), str(block.get("block_id")))
        blocks.setdefault(key, block)
    head = (course.course_id, course.org, course.course, course.run)
    tail = (str(course.published), date_text(structure.get("edited_on")))

    def row(
        key: BlockKey,
        location: str,
        parent: str | None,
        settings: dict[str, str | None],
        rest: tuple[Any, ...],
    ) -> tuple[str | None, ...]:
        """``rest``: the ancestor names, component, order, numbers and format columns."""
        block = blocks[key]
        weight = None
        if key[0] == "problem":
            weight = explicit_weight(block)
            if weight is None:
                count = response_counts.get(block.get("definition"))
                weight = None if count is None else str(count)  # no definition: unknown
        names, component, order, numbers, block_format = rest
        return (
            location,
            *head,
            parent,
            *key,
            _display_name(block),
            *names,
            component,
            weight,
            order,
            *numbers,
            settings["graded"],
            block_format,
            settings["due"],
            settings["start"],
            settings["visible_to_staff_only"],
            boolean_text(_own(block, "hide_from_toc")),
            *tail,
        )

    seen: set[BlockKey] = set()
    root = _root_key(structure, blocks)
    if root is not None:
        # Each entry: the block, its parent's location, and what it takes from above: the
        # outermost ancestor name of each ANCESTOR_TYPES (and which types have one), its
        # section/subsection/unit numbers, the resolved INHERITED settings and the enclosing
        # subsection's format.
        none: tuple[Any, ...] = (None,) * len(ANCESTOR_TYPES)
        untaken = (False,) * len(ANCESTOR_TYPES)
        stack: list[tuple[Any, ...]]
        stack = [(root, None, none, untaken, (0, 0, 0), _FIELD_DEFAULTS, _UNSET)]
        seen.add(root)
        order = 0
        while stack:
            key, parent, names, taken, numbers, inherited, subsection_format = stack.pop()
            block = blocks[key]
            fields = block.get("fields") or {}
            settings = inherited_settings(block, inherited)
            own_format = _own_text(block, "format")
            if key[0] == "sequential" and subsection_format is _UNSET:
                subsection_format = own_format
            block_format = own_format if subsection_format is _UNSET else subsection_format
            component = None
            if key[0] not in ANCESTOR_TYPES and not fields.get("children"):
                component = _display_name(block)  # a leaf component names itself
            location = course_location(course, *key)
            rest = (names, component, str(order), number_texts(numbers), block_format)
            yield row(key, location, parent, settings, rest)
            order += 1
            if key[0] in ANCESTOR_TYPES:
                i = ANCESTOR_TYPES.index(key[0])
                if not taken[i]:  # as the original: the outermost of a type names them
                    names = (*names[:i], _display_name(block), *names[i + 1 :])
                    taken = (*taken[:i], True, *taken[i + 1 :])
            counters = dict.fromkeys(NUMBERED_TYPES, 0)
            children = []
            for child in _children(block):
                if child not in blocks or child in seen:
                    continue
                seen.add(child)
                place = _numbered(numbers, child[0], counters)
                children.append((child, location, names, taken, place, settings, subsection_format))
            stack.extend(reversed(children))
    nothing = ((None,) * len(ANCESTOR_TYPES), None, None, (None, None, None))
    for key, block in blocks.items():
        if key not in seen:
            settings = inherited_settings(block, _FIELD_DEFAULTS)
            location = course_location(course, *key)
            yield row(key, location, None, settings, (*nothing, _own_text(block, "format")))


def number_texts(numbers: tuple[int, int, int]) -> tuple[str, str, str]:
    """section_number, subsection_number and unit_number as Aspects writes them: the block's
    position down to that level, deeper levels 0 ('1:0:0', '1:2:0', '1:2:3')."""
    section, subsection, unit = numbers
    return (f"{section}:0:0", f"{section}:{subsection}:0", f"{section}:{subsection}:{unit}")


def _numbered(numbers: tuple[int, int, int], block_type: str, counters: dict[str, int]) -> Any:
    """A child's section, subsection and unit numbers: a chapter, sequential or vertical not
    yet inside one of its level takes the next number among its siblings of that type, and
    the levels below it start at 0; any other child has its parent's numbers."""
    if block_type not in counters:
        return numbers
    level = NUMBERED_TYPES.index(block_type)
    if numbers[level]:
        return numbers
    counters[block_type] += 1
    n = counters[block_type]
    return ((n, 0, 0), (numbers[0], n, 0), (numbers[0], numbers[1], n))[level]


def _own(block: dict[str, Any], name: str) -> Any:
    """A setting of the block itself: its ``fields``, else its ``defaults`` (split
    modulestore's values from a library or template); None when it sets neither."""
    fields = block.get("fields") or {}
    if name in fields:
        return fields[name]
    return (block.get("defaults") or {}).get(name)


def _own_text(block: dict[str, Any], name: str) -> str | None:
    value = _own(block, name)
    return None if value is None else str(value)


def inherited_settings(
    block: dict[str, Any], inherited: dict[str, str | None]
) -> dict[str, str | None]:
    """The block's INHERITED settings as written in the rows: its own (fields, else
    defaults) where it sets them, else its parent's (``inherited``)."""
    fields = block.get("fields") or {}
    defaults = block.get("defaults") or {}
    resolved = inherited
    for name in INHERITED:
        if name in fields or name in defaults:
            if resolved is inherited:
                resolved = dict(inherited)  # most blocks set none: share the parent's dict
            value = fields[name] if name in fields else defaults[name]
            resolved[name] = date_text(value) if name in ("start", "due") else boolean_text(value)
    return resolved


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
