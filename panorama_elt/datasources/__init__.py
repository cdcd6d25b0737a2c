"""Datasource plugins: one module each, imported only when used.

Adding a type: write its module (the class), declare its settings as ``SettingsBlock``s in a
module that imports no driver (see ``source_settings.py``: a frozen dataclass, its key tuple
and a parse function), and add a ``Plugin`` entry here. Settings validation then accepts
exactly those keys for that type (plus type, name and tables), and the plugin reads its
typed settings with ``settings.block(TheDataclass)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from panorama_elt.datasources.edfi_settings import EDFI, edfi_tables
from panorama_elt.datasources.source_settings import (
    COURSE_STRUCTURES,
    CSV,
    MONGODB,
    MYSQL,
    OPTIONAL_MYSQL,
    XLS,
    csv_tables,
    xls_tables,
)
from panorama_elt.plugins import Plugin

if TYPE_CHECKING:
    from panorama_elt.datasources.base import Datasource
    from panorama_elt.settings import DatasourceSettings

REGISTRY: dict[str, Plugin] = {
    "mysql": Plugin("panorama_elt.datasources.mysql:MySQLDatasource", (MYSQL,)),
    "openedx_course_structures": Plugin(
        "panorama_elt.datasources.openedx_course_structures:CourseStructuresDatasource",
        # The MySQL course index is optional: without it, MongoDB's active_versions is read.
        (OPTIONAL_MYSQL, MONGODB, COURSE_STRUCTURES),
    ),
    "csv": Plugin("panorama_elt.datasources.csv_files:CsvDatasource", (CSV,), csv_tables),
    "xls": Plugin("panorama_elt.datasources.xlsx_files:XlsxDatasource", (XLS,), xls_tables),
    "edfi_api": Plugin("panorama_elt.datasources.edfi_api:EdfiDatasource", (EDFI,), edfi_tables),
}


def make_datasource(settings: DatasourceSettings) -> Datasource:
    """Instantiate the plugin for ``settings.type`` (validated to be in REGISTRY)."""
    instance: Datasource = REGISTRY[settings.type].load()(settings)
    return instance
