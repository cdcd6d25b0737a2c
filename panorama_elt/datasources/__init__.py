"""Datasource plugins: one module each, imported only when used."""

from __future__ import annotations

import importlib

from panorama_elt.datasources.base import Datasource
from panorama_elt.errors import SettingsError
from panorama_elt.settings import DatasourceSettings

REGISTRY: dict[str, str] = {
    "mysql": "panorama_elt.datasources.mysql:MySQLDatasource",
    "openedx_course_structures": (
        "panorama_elt.datasources.openedx_course_structures:CourseStructuresDatasource"
    ),
}


def make_datasource(settings: DatasourceSettings) -> Datasource:
    """Instantiate the plugin for ``settings.type``."""
    try:
        module_name, class_name = REGISTRY[settings.type].split(":")
    except KeyError:
        valid = ", ".join(sorted(REGISTRY))
        raise SettingsError(
            f"{settings.path}.type: unknown datasource type {settings.type!r} (valid: {valid})"
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    instance: Datasource = cls(settings)
    return instance
