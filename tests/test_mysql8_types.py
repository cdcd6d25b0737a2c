"""MySQL 8 type spellings (no integer display width) load and give the same typed views."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
import yaml

from panorama_elt.column_types import parse_column_type
from panorama_elt.settings import parse_settings
from panorama_elt.views import DIALECTS, column_sql, create_view_sql
from tests.conftest import TEMPLATE

# (MySQL 5.7 / MariaDB spelling, MySQL 8.0.19+ spelling, view type, DuckDB's type of the value)
SPELLINGS = [
    ("int(11)", "int", "BIGINT", "BIGINT"),
    ("int(10) unsigned", "int unsigned", "BIGINT", "BIGINT"),
    ("bigint(20)", "bigint", "BIGINT", "BIGINT"),
    ("bigint(20) unsigned", "bigint unsigned", "DECIMAL(20,0)", "DECIMAL(20,0)"),
    ("smallint(6)", "smallint", "BIGINT", "BIGINT"),
    ("mediumint(8) unsigned", "mediumint unsigned", "BIGINT", "BIGINT"),
    ("tinyint(4)", "tinyint", "BIGINT", "BIGINT"),
    ("tinyint(1)", "tinyint(1)", "BIGINT", "BIGINT"),  # MySQL 8 keeps the (1) of booleans
    ("int(10) unsigned zerofill", "int unsigned zerofill", "BIGINT", "BIGINT"),
    ("year(4)", "year", "BIGINT", "BIGINT"),
    ("datetime(6)", "datetime(6)", "TIMESTAMP", "TIMESTAMP"),
    ("decimal(5,2)", "decimal(5,2)", "DECIMAL(5,2)", "DECIMAL(5,2)"),
]


@pytest.mark.parametrize("old, new, view_type, duck_type", SPELLINGS, ids=[s[1] for s in SPELLINGS])
def test_both_spellings_map_to_the_same_view_type(
    old: str, new: str, view_type: str, duck_type: str
) -> None:
    db = duckdb.connect()
    for spelling in (old, new):
        ctype = parse_column_type(spelling)
        assert ctype.view_type == view_type, spelling
        sql = column_sql("c", ctype, "duckdb")
        (typeof,) = db.execute(f"SELECT typeof({sql}) FROM (SELECT '1' AS c)").fetchone()
        assert typeof == duck_type, spelling


def mysql8_spelling(column_type: str) -> str:
    """A 5.7 column type as MySQL 8 writes it: integers lose their width, except tinyint(1)."""
    if column_type == "tinyint(1)":
        return column_type
    return re.sub(r"^(tinyint|smallint|mediumint|int|bigint|year)\(\d+\)", r"\1", column_type)


def test_the_template_in_mysql8_spellings_gives_the_same_views(tmp_path: Path) -> None:
    data = yaml.safe_load(TEMPLATE.read_text())
    rewritten = 0
    for source in data["datasources"]:
        for table in source["tables"]:
            for field in table["fields"]:
                new = mysql8_spelling(field["type"])
                rewritten += new != field["type"]
                field["type"] = new
    # The template really is written in the 5.7 spellings (41 integer columns in 2026).
    assert rewritten >= 40
    original = parse_settings(yaml.safe_load(TEMPLATE.read_text()), tmp_path / "s.yaml")
    mysql8 = parse_settings(data, tmp_path / "s.yaml")
    for before, after in zip(original.tables, mysql8.tables, strict=True):
        for dialect in DIALECTS:
            assert create_view_sql(after, mysql8.datalake, dialect) == create_view_sql(
                before, original.datalake, dialect
            ), (before.name, dialect)
