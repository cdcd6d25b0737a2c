"""Analytics views over the typed views: the built-in Open edX ones and a folder of the user's.

Each view is one SELECT written once in Athena (Trino) SQL with ``{name}`` placeholders; the
DuckDB form is produced by sqlglot, so the two datalakes run the same definition. A placeholder
is a table of the settings (its typed view), the reference table ``country_codes``, an
analytics view made before it (``{view_enrollments}``), or ``{base_prefix}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from panorama_elt.errors import DatalakeError, PanoramaError
from panorama_elt.reference import country_codes_table
from panorama_elt.settings import Settings, is_identifier
from panorama_elt.views import quote_name

if TYPE_CHECKING:
    from panorama_elt.datalakes.base import Datalake

# The built-in views, in dependency order (view_enrollments reads the two before it).
BUILTIN_VIEWS = (
    "view_student_courseaccessrole",
    "view_student_manualenrollmentaudit",
    "view_enrollments",
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The column every join matches so that installations sharing the lake never mix.
LMS_PARTITION = "lms"


@dataclass(frozen=True)
class AnalyticsView:
    """One view to create: its name, its Athena SQL with placeholders, and where it came from."""

    name: str
    key: str  # how other views name it in a placeholder (``view_enrollments``)
    sql: str
    source: str


def builtin_views(settings: Settings) -> list[AnalyticsView]:
    """The three Open edX views, named after base_prefix."""
    folder = resources.files("panorama_elt") / "analytics_sql"
    return [
        AnalyticsView(
            view_name(settings, key), key, (folder / f"{key}.sql").read_text("utf-8"), key
        )
        for key in BUILTIN_VIEWS
    ]


def user_views(settings: Settings) -> list[AnalyticsView]:
    """The ``*.sql`` files of datalake.views_folder, by file name; each names its view."""
    folder = settings.datalake.views_folder
    if folder is None:
        return []
    if not folder.is_dir():
        raise DatalakeError(f"datalake.views_folder: {folder} is not a folder")
    views = []
    for path in sorted(folder.glob("*.sql")):
        if not is_identifier(path.stem):
            raise DatalakeError(
                f"{path}: the file name must be a plain view name (letters, digits and _)"
            )
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatalakeError(f"{path}: cannot read: {exc}") from None
        views.append(AnalyticsView(path.stem.lower(), path.stem.lower(), text, str(path)))
    return views


def view_name(settings: Settings, key: str) -> str:
    """``<base_prefix>_<key>``, or ``key`` alone without a base_prefix."""
    prefix = settings.datalake.base_prefix
    return f"{prefix}_{key}" if prefix else key


def placeholders(sql: str) -> list[str]:
    """The placeholder names a view's SQL uses, in order of appearance."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(sql)))


def render(sql: str, names: dict[str, str], qualifier: str | None) -> str:
    """The SQL with each placeholder replaced by its quoted name (``qualifier``-qualified)."""

    def name(match: re.Match[str]) -> str:
        key = match[1]
        if key == "base_prefix":
            return names[key]
        ref = quote_name(names[key])
        return f"{quote_name(qualifier)}.{ref}" if qualifier else ref

    body = "\n".join(
        line for line in sql.strip().splitlines() if not line.lstrip().startswith("--")
    )
    return _PLACEHOLDER.sub(name, body)


def to_duckdb(athena_sql: str, source: str) -> str:
    """The DuckDB form of one Athena SELECT; a parse error names the view's source."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = sqlglot.parse(athena_sql, read="athena")
    except sqlglot.errors.SqlglotError as exc:
        raise DatalakeError(f"{source}: not valid Athena SQL: {_first_line(exc)}") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise DatalakeError(f"{source}: must hold exactly one SELECT statement")
    return statements[0].sql(dialect="duckdb")


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split("\n")[0].split())


@dataclass
class Outcome:
    """What happened to one analytics view: created, skipped (why), or failed (the error)."""

    view: AnalyticsView
    skipped: str | None = None
    error: str | None = None


def create_views(settings: Settings, datalake: Datalake) -> Iterator[Outcome]:
    """Create the built-in views, then the user's, each after the views it reads."""
    views = builtin_views(settings) + user_views(settings)
    if LMS_PARTITION not in {bp.name for bp in settings.datalake.base_partitions}:
        for view in views:
            yield Outcome(
                view, skipped="datalake.base_partitions has no 'lms' partition to join on"
            )
        return
    names = {t.name: t.datalake_table_view for t in settings.tables}
    if settings.datalake.base_prefix:
        names["base_prefix"] = settings.datalake.base_prefix
    reference = country_codes_table(settings)
    names.setdefault(reference.name, reference.datalake_table_view)
    for view in views:
        missing = [p for p in placeholders(view.sql) if p not in names]
        if missing:
            yield Outcome(view, skipped=_missing(missing))
            continue
        try:
            datalake.create_sql_view(
                view.name, render(view.sql, names, datalake.view_qualifier), view.source
            )
        except PanoramaError as exc:
            yield Outcome(view, error=str(exc))
            continue
        names[view.key] = view.name
        yield Outcome(view)


def _missing(keys: list[str]) -> str:
    views = [k for k in keys if k.startswith("view_")]
    tables = [k for k in keys if k not in views and k != "base_prefix"]
    reasons = []
    if tables:
        reasons.append(f"table {', '.join(tables)} not in the settings")
    if views:
        reasons.append(f"view {', '.join(views)} not created")
    if "base_prefix" in keys:
        reasons.append("datalake.base_prefix is not set")
    return "; ".join(reasons)
