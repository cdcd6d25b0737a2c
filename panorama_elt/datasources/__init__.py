"""Datasource plugins: one module each, imported only when used."""

from __future__ import annotations

from panorama_elt.datasources.base import Datasource
from panorama_elt.plugins import load_plugin
from panorama_elt.settings import DatasourceSettings

REGISTRY: dict[str, str] = {
    "mysql": "panorama_elt.datasources.mysql:MySQLDatasource",
    "openedx_course_structures": (
        "panorama_elt.datasources.openedx_course_structures:CourseStructuresDatasource"
    ),
    "edfi_api": "panorama_elt.datasources.edfi_api:EdfiDatasource",
}


def make_datasource(settings: DatasourceSettings) -> Datasource:
    """Instantiate the plugin for ``settings.type``."""
    instance: Datasource = load_plugin(
        REGISTRY, settings.type, f"{settings.path}.type", "datasource"
    )(settings)
    return instance
