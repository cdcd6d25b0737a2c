"""set-tables and set-tables-fields: rewrite parts of the settings file, keeping the rest.

The file is edited with ruamel.yaml's round-trip mode, so comments, key order, quoting and
${ENV_VAR} values everywhere else stay as the user wrote them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap

from panorama_elt.errors import SettingsError, UsageError
from panorama_elt.settings import is_identifier, parse_settings, read_settings_yaml


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=2, offset=0)
    return yaml


def _load(path: Path) -> Any:
    """The settings document for editing (checked for syntax by the strict reader first)."""
    read_settings_yaml(path)
    try:
        return _yaml().load(path.read_text(encoding="utf-8"))
    except YAMLError as exc:
        raise SettingsError(f"cannot edit the settings file: {exc}", str(path)) from None


def _flow(**items: str) -> CommentedMap:
    """A one-line mapping such as {name: id, type: int(11)}."""
    entry = CommentedMap(items)
    entry.fa.set_flow_style()
    return entry


def set_tables(
    path: Path,
    names: list[str],
    datasource: str | None,
    extra: dict[str, dict[str, str]] | None = None,
) -> str:
    """Make ``names`` the table list of a datasource; keep what those tables already had.

    ``extra`` gives new tables more keys (an xls table's ``sheet``)."""
    bad = [n for n in names if not is_identifier(n)]
    if bad:
        raise UsageError(f"--tables: {', '.join(map(repr, bad))} is not a plain table name")
    data = _load(path)
    source = _find_datasource(data, datasource)
    current = {t.get("name"): t for t in source.get("tables") or [] if isinstance(t, dict)}
    source["tables"] = [
        current.get(name, CommentedMap(name=name, **(extra or {}).get(name, {}))) for name in names
    ]
    _write(path, data)
    return str(source.get("name"))


def set_fields(path: Path, found: dict[tuple[str, str], list[tuple[str, str]]]) -> None:
    """Write each table's (column, type) list; constant fields the user added are kept."""
    data = _load(path)
    for source in data.get("datasources") or []:
        tables: Any = source.get("tables") or []
        # A csv datasource may hold its one table as a mapping, as the original writes it.
        for table in [tables] if isinstance(tables, dict) else tables:
            columns = found.get((str(source.get("name")), str(table.get("name"))))
            if columns is None:
                continue
            constants = [
                f for f in table.get("fields") or [] if isinstance(f, dict) and "value" in f
            ]
            known = {c for c, _ in columns}
            table["fields"] = [_flow(name=c, type=t) for c, t in columns] + [
                f for f in constants if f.get("name") not in known
            ]
    _write(path, data)


def _find_datasource(data: Any, name: str | None) -> dict[str, Any]:
    sources = (
        [s for s in (data.get("datasources") or []) if isinstance(s, dict)]
        if isinstance(data, dict)
        else []
    )
    if name is not None:
        for source in sources:
            if source.get("name") == name:
                return source
        raise UsageError(f"--datasource: no datasource named {name!r} in the settings")
    mysql = [s for s in sources if s.get("type") == "mysql"]
    if len(mysql) != 1:
        raise UsageError(
            f"the settings have {len(mysql)} mysql datasources: choose one with --datasource"
        )
    return mysql[0]


def _write(path: Path, data: Any) -> None:
    """Validate the new document, keep a backup, then replace the file."""
    try:
        parse_settings(data, path)
    except SettingsError as exc:
        # Only the structure matters here: unset ${ENV} values are fine to write back.
        real = [p for p in exc.problems if "environment variable" not in p]
        if real:
            raise SettingsError(real, str(path)) from None
    shutil.copy2(path, path.with_name(path.name + ".bak"))
    target = path.resolve()  # write through a symlink, not over it
    tmp = target.with_name(f".{target.name}.tmp")
    # The file holds passwords: the new one is private until it gets the old one's mode and owner.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        _yaml().dump(data, out)
    info = target.stat()
    os.chmod(tmp, stat.S_IMODE(info.st_mode))
    with contextlib.suppress(PermissionError):
        os.chown(tmp, info.st_uid, info.st_gid)
    tmp.replace(target)
