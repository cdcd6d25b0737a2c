"""The Ed-Fi resources this tool knows the shape of: identity and top-level scalar properties.

A hand-written subset of the Ed-Fi Data Standard 5.0 resource model (the public OpenAPI
specification flags identity properties with ``x-Ed-Fi-isIdentity``). It gives the typed
columns of a resource's current-state view and the identity the emulator upserts by; a
resource not listed here still lands whole (``id`` and ``doc``) and is deduplicated by ``id``.
Reference objects that are part of the identity (``schoolReference``) contribute their own
identity properties as columns (``school_id``); other arrays, references and ``_ext`` stay in
``doc``. Descriptors all share one shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# JSON schema type/format -> the typed view's SQL type.
VIEW_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "date-time": "TIMESTAMP",
}


@dataclass(frozen=True)
class Property:
    """One typed column of a resource: where it is in a record and its JSON schema type."""

    path: tuple[str, ...]
    type: str
    identity: bool = False

    @property
    def column(self) -> str:
        """The view column name: the snake_case of the innermost key, without a leading ``_``."""
        return snake_case(self.path[-1].lstrip("_"))


def snake_case(name: str) -> str:
    """``studentSchoolAssociations`` -> ``student_school_associations``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _p(spec: str) -> Property:
    """``'*schoolReference.schoolId:integer'``: a leading ``*`` marks an identity property."""
    identity = spec.startswith("*")
    path, kind = spec.lstrip("*").split(":")
    return Property(tuple(path.split(".")), kind, identity)


_COMMON = ("_lastModifiedDate:date-time",)

RESOURCES: dict[str, tuple[Property, ...]] = {
    "ed-fi/schools": tuple(
        _p(s)
        for s in (
            "*schoolId:integer",
            "nameOfInstitution:string",
            "shortNameOfInstitution:string",
            "webSite:string",
            "schoolTypeDescriptor:string",
            "charterStatusDescriptor:string",
            "operationalStatusDescriptor:string",
            "localEducationAgencyReference.localEducationAgencyId:integer",
            *_COMMON,
        )
    ),
    "ed-fi/students": tuple(
        _p(s)
        for s in (
            "*studentUniqueId:string",
            "firstName:string",
            "middleName:string",
            "lastSurname:string",
            "birthDate:date",
            "birthCity:string",
            "birthSexDescriptor:string",
            "multipleBirthStatus:boolean",
            *_COMMON,
        )
    ),
    "ed-fi/studentSchoolAssociations": tuple(
        _p(s)
        for s in (
            "*entryDate:date",
            "*schoolReference.schoolId:integer",
            "*studentReference.studentUniqueId:string",
            "entryGradeLevelDescriptor:string",
            "entryTypeDescriptor:string",
            "exitWithdrawDate:date",
            "exitWithdrawTypeDescriptor:string",
            "fullTimeEquivalency:number",
            "primarySchool:boolean",
            "repeatGradeIndicator:boolean",
            *_COMMON,
        )
    ),
    "ed-fi/sections": tuple(
        _p(s)
        for s in (
            "*sectionIdentifier:string",
            "*courseOfferingReference.localCourseCode:string",
            "*courseOfferingReference.schoolId:integer",
            "*courseOfferingReference.schoolYear:integer",
            "*courseOfferingReference.sessionName:string",
            "sectionName:string",
            "availableCredits:number",
            "sequenceOfCourse:integer",
            "officialAttendancePeriod:boolean",
            "educationalEnvironmentDescriptor:string",
            *_COMMON,
        )
    ),
    "ed-fi/studentSectionAttendanceEvents": tuple(
        _p(s)
        for s in (
            "*attendanceEventCategoryDescriptor:string",
            "*eventDate:date",
            "*sectionReference.localCourseCode:string",
            "*sectionReference.schoolId:integer",
            "*sectionReference.schoolYear:integer",
            "*sectionReference.sectionIdentifier:string",
            "*sectionReference.sessionName:string",
            "*studentReference.studentUniqueId:string",
            "attendanceEventReason:string",
            "eventDuration:number",
            "sectionAttendanceDuration:integer",
            *_COMMON,
        )
    ),
}

DESCRIPTOR = tuple(
    _p(s)
    for s in (
        "*namespace:string",
        "*codeValue:string",
        "shortDescription:string",
        "description:string",
        "effectiveBeginDate:date",
        "effectiveEndDate:date",
        *_COMMON,
    )
)


def resource_properties(namespace: str, resource: str) -> tuple[Property, ...]:
    """The known typed properties of ``namespace/resource`` (empty when not known)."""
    if resource.endswith("Descriptors"):
        return DESCRIPTOR
    return RESOURCES.get(f"{namespace}/{resource}", ())


def identity(namespace: str, resource: str) -> tuple[Property, ...]:
    """The identity properties of a resource (empty when not known: then only ``id`` counts)."""
    return tuple(p for p in resource_properties(namespace, resource) if p.identity)
