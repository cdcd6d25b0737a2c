"""Built-in reference tables shipped in the package: ISO 3166 country codes.

``panorama_elt/data/country_codes.csv`` comes from the countryinfo package (MIT licence;
``scripts/country_codes.py`` regenerates it): alpha-2 and alpha-3 codes, English name, and the
latitude/longitude of a representative point of each country. It is loaded like any table, by
the csv datasource, under this installation's base partitions.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

from panorama_elt.column_types import parse_column_type
from panorama_elt.datasources.source_settings import CsvSettings
from panorama_elt.settings import (
    DatasourceSettings,
    FieldSettings,
    Settings,
    TableSettings,
)

COUNTRY_CODES = "country_codes"
REFERENCE_DATASOURCE = "panorama_reference"
_COUNTRY_FIELDS = (
    ("alpha2_code", "varchar(2)"),
    ("alpha3_code", "varchar(3)"),
    ("name", "varchar(255)"),
    ("latitude", "double"),
    ("longitude", "double"),
)


def country_codes_file() -> Path:
    """The shipped CSV file."""
    return Path(str(resources.files("panorama_elt") / "data" / "country_codes.csv"))


def builtin_country_codes(settings: Settings) -> bool:
    """True unless the settings have a table of their own called country_codes."""
    return all(t.name != COUNTRY_CODES for t in settings.tables)


def country_codes_table(settings: Settings) -> TableSettings:
    """The country codes table: the settings' own, or the built-in one."""
    for table in settings.tables:
        if table.name == COUNTRY_CODES:
            return table
    prefix = f"{settings.datalake.base_prefix}_" if settings.datalake.base_prefix else ""
    return TableSettings(
        name=COUNTRY_CODES,
        datasource=REFERENCE_DATASOURCE,
        datalake_table_name=f"{prefix}raw_{COUNTRY_CODES}",
        datalake_table_view=f"{prefix}table_{COUNTRY_CODES}",
        fields=tuple(FieldSettings(n, parse_column_type(t)) for n, t in _COUNTRY_FIELDS),
        path="(built-in country codes)",
    )


def reference_settings(settings: Settings) -> Settings:
    """Settings whose only datasource is the shipped country codes file (a csv datasource)."""
    table = country_codes_table(settings)
    source = DatasourceSettings(
        type="csv",
        name=REFERENCE_DATASOURCE,
        tables=(table,),
        path="(built-in country codes)",
        # A few territories have no representative point: an empty field is NULL here.
        blocks=(CsvSettings(location=country_codes_file(), null_value=""),),
    )
    return dataclasses.replace(settings, datasources=(source,))
