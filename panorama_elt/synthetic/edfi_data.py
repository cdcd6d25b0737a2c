"""A deterministic synthetic Ed-Fi dataset: descriptors, schools, students, enrollments, sections
and attendance events, as the JSON bodies a client POSTs (no ``id``, ``_etag`` or dates of
the server's own).

Values include the awkward cases a lake must keep exactly: quotes, commas, backslashes, a
line break, non-ASCII letters and an emoji, an ``_ext`` object and nested arrays.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

NAMESPACE = "uri://ed-fi.org"
GRADES = ("Ninth grade", "Tenth grade", "Eleventh grade", "Twelfth grade")
ATTENDANCE = ("In Attendance", "Tardy", "Excused Absence", "Unexcused Absence")
FIRST = ("Ana", "Bo", "Chloé", "Dmitri", 'Eve "E."', "Farah", "Gus, Jr.", "Hiro", "Inés", "Jo")
LAST = ("Álvarez", "Back\\slash", "Chen", "D'Souza", "Ekström", "Fox", "García", "Line\nBreak")

# Dependency order: a resource only references resources before it.
RESOURCE_ORDER = (
    "gradeLevelDescriptors",
    "attendanceEventCategoryDescriptors",
    "schools",
    "students",
    "studentSchoolAssociations",
    "sections",
    "studentSectionAttendanceEvents",
)


def descriptor_uri(descriptor: str, code: str) -> str:
    """The URI a record uses to name a descriptor value."""
    return f"{NAMESPACE}/{descriptor}#{code}"


def generate(
    schools: int = 3, students: int = 40, events_per_student: int = 3, seed: int = 15
) -> dict[str, list[dict[str, Any]]]:
    """The dataset as {resource: [POST body, ...]}, in dependency order."""
    rng = random.Random(seed)
    data: dict[str, list[dict[str, Any]]] = {name: [] for name in RESOURCE_ORDER}
    for descriptor, codes in (
        ("GradeLevelDescriptor", GRADES),
        ("AttendanceEventCategoryDescriptor", ATTENDANCE),
    ):
        key = descriptor[0].lower() + descriptor[1:] + "s"
        for code in codes:
            data[key].append(
                {
                    "codeValue": code,
                    "namespace": f"{NAMESPACE}/{descriptor}",
                    "shortDescription": code,
                    "description": f"{code} ({descriptor})",
                    "effectiveBeginDate": "2020-07-01",
                }
            )
    school_ids = [255901001 + i for i in range(schools)]
    for i, school_id in enumerate(school_ids):
        data["schools"].append(
            {
                "schoolId": school_id,
                "nameOfInstitution": f'Grand Bend High School #{i + 1}, "Main" 🎓',
                "shortNameOfInstitution": f"GBHS{i + 1}",
                "webSite": f"https://school{i + 1}.example.org/",
                "educationOrganizationCategories": [
                    {
                        "educationOrganizationCategoryDescriptor": descriptor_uri(
                            "EducationOrganizationCategoryDescriptor", "School"
                        )
                    }
                ],
                "gradeLevels": [
                    {"gradeLevelDescriptor": descriptor_uri("GradeLevelDescriptor", g)}
                    for g in GRADES
                ],
                "_ext": {"sample": {"isExemplary": i % 2 == 0}},
            }
        )
    sections: list[dict[str, Any]] = []
    for school_id in school_ids:
        for n in range(2):
            sections.append(
                {
                    "sectionIdentifier": f"{school_id}-ALG-{n + 1}",
                    "courseOfferingReference": {
                        "localCourseCode": "ALG-1",
                        "schoolId": school_id,
                        "schoolYear": 2024,
                        "sessionName": "2023-2024 Fall Semester",
                    },
                    "sectionName": f"Algebra I, period {n + 1}",
                    "availableCredits": 1.5,
                    "sequenceOfCourse": n + 1,
                    "officialAttendancePeriod": n == 0,
                }
            )
    data["sections"] = sections
    start = date(2023, 8, 21)
    for s in range(students):
        unique_id = f"6040{s:04d}"
        data["students"].append(
            {
                "studentUniqueId": unique_id,
                "firstName": FIRST[s % len(FIRST)],
                "lastSurname": LAST[(s * 3) % len(LAST)],
                "birthDate": (date(2008, 1, 1) + timedelta(days=rng.randrange(1400))).isoformat(),
                "birthCity": rng.choice(("Austin", "Dallas", "El Paso", "San José")),
                "multipleBirthStatus": rng.random() < 0.05,
            }
        )
        school_id = school_ids[s % len(school_ids)]
        data["studentSchoolAssociations"].append(
            {
                "entryDate": start.isoformat(),
                "schoolReference": {"schoolId": school_id},
                "studentReference": {"studentUniqueId": unique_id},
                "entryGradeLevelDescriptor": descriptor_uri(
                    "GradeLevelDescriptor", GRADES[s % len(GRADES)]
                ),
                "fullTimeEquivalency": 1.0 if s % 5 else 0.5,
                "primarySchool": True,
            }
        )
        section = sections[(s % len(school_ids)) * 2 + s % 2]
        for e in range(events_per_student):
            data["studentSectionAttendanceEvents"].append(
                {
                    "attendanceEventCategoryDescriptor": descriptor_uri(
                        "AttendanceEventCategoryDescriptor", rng.choice(ATTENDANCE)
                    ),
                    "eventDate": (start + timedelta(days=7 * e + s % 5)).isoformat(),
                    "sectionReference": {
                        "localCourseCode": "ALG-1",
                        "schoolId": section["courseOfferingReference"]["schoolId"],
                        "schoolYear": 2024,
                        "sectionIdentifier": section["sectionIdentifier"],
                        "sessionName": "2023-2024 Fall Semester",
                    },
                    "studentReference": {"studentUniqueId": unique_id},
                    "eventDuration": round(rng.uniform(0.25, 1.0), 2),
                    "sectionAttendanceDuration": rng.randrange(10, 60),
                }
            )
    return data
