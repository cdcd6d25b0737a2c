"""Deterministic generator of a synthetic Open edX ``edxapp`` MySQL database."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import accumulate, islice
from typing import Any

import pymysql

_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"

# Column names, types, NULL-ability and indexes follow a fresh edx-platform install (Django
# migrations of recent named releases). Foreign key constraints are left out on purpose.
TABLES: dict[str, str] = {
    "student_anonymoususerid": f"""CREATE TABLE `student_anonymoususerid` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `anonymous_user_id` varchar(32) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `user_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `anonymous_user_id` (`anonymous_user_id`),
  KEY `student_anonymoususerid_user_id_0fb2ad5c_fk_auth_user_id` (`user_id`),
  KEY `student_anonymoususerid_course_id_99cc6a18` (`course_id`)
) {_OPTIONS}""",
    "site_configuration_siteconfiguration": f"""CREATE TABLE
  `site_configuration_siteconfiguration` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `site_id` int(11) NOT NULL,
  `enabled` tinyint(1) NOT NULL,
  `site_values` longtext NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `site_id` (`site_id`)
) {_OPTIONS}""",
    "auth_user": f"""CREATE TABLE `auth_user` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `password` varchar(128) NOT NULL,
  `last_login` datetime(6) DEFAULT NULL,
  `is_superuser` tinyint(1) NOT NULL,
  `username` varchar(150) NOT NULL,
  `first_name` varchar(150) NOT NULL,
  `last_name` varchar(150) NOT NULL,
  `email` varchar(254) NOT NULL,
  `is_staff` tinyint(1) NOT NULL,
  `is_active` tinyint(1) NOT NULL,
  `date_joined` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `username` (`username`),
  UNIQUE KEY `email` (`email`)
) {_OPTIONS}""",
    "student_courseenrollment": f"""CREATE TABLE `student_courseenrollment` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `course_id` varchar(255) NOT NULL,
  `created` datetime(6) DEFAULT NULL,
  `is_active` tinyint(1) NOT NULL,
  `mode` varchar(100) NOT NULL,
  `user_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `student_courseenrollment_user_id_course_id_5d34a47f_uniq` (`user_id`,`course_id`),
  KEY `student_courseenrollment_course_id_a6f93be8` (`course_id`),
  KEY `student_courseenrollment_created_79829893` (`created`),
  KEY `student_cou_user_id_b19dcd_idx` (`user_id`,`created`)
) {_OPTIONS}""",
    "auth_userprofile": f"""CREATE TABLE `auth_userprofile` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(255) NOT NULL,
  `meta` longtext NOT NULL,
  `courseware` varchar(255) NOT NULL,
  `language` varchar(255) NOT NULL,
  `location` varchar(255) NOT NULL,
  `year_of_birth` int(11) DEFAULT NULL,
  `gender` varchar(6) DEFAULT NULL,
  `level_of_education` varchar(6) DEFAULT NULL,
  `mailing_address` longtext DEFAULT NULL,
  `city` longtext DEFAULT NULL,
  `country` varchar(2) DEFAULT NULL,
  `goals` longtext DEFAULT NULL,
  `bio` varchar(3000) DEFAULT NULL,
  `profile_image_uploaded_at` datetime(6) DEFAULT NULL,
  `user_id` int(11) NOT NULL,
  `phone_number` varchar(50) DEFAULT NULL,
  `state` varchar(2) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `user_id` (`user_id`),
  KEY `auth_userprofile_name_50909f10` (`name`),
  KEY `auth_userprofile_language_8948d814` (`language`),
  KEY `auth_userprofile_location_ca92e4f6` (`location`),
  KEY `auth_userprofile_year_of_birth_6559b9a5` (`year_of_birth`),
  KEY `auth_userprofile_gender_44a122fb` (`gender`),
  KEY `auth_userprofile_level_of_education_93927e04` (`level_of_education`)
) {_OPTIONS}""",
    "student_courseaccessrole": f"""CREATE TABLE `student_courseaccessrole` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `org` varchar(64) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `role` varchar(64) NOT NULL,
  `user_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `student_courseaccessrole_user_id_org_course_id_ro_bbf71126_uniq`
    (`user_id`,`org`,`course_id`,`role`),
  KEY `student_courseaccessrole_org_6d2dbb7a` (`org`),
  KEY `student_courseaccessrole_course_id_60fb355e` (`course_id`),
  KEY `student_courseaccessrole_role_1ac888ea` (`role`)
) {_OPTIONS}""",
    "course_overviews_courseoverview": f"""CREATE TABLE `course_overviews_courseoverview` (
  `created` datetime(6) NOT NULL,
  `modified` datetime(6) NOT NULL,
  `version` int(11) NOT NULL,
  `id` varchar(255) NOT NULL,
  `_location` varchar(255) NOT NULL,
  `display_name` longtext DEFAULT NULL,
  `display_number_with_default` longtext NOT NULL,
  `display_org_with_default` longtext NOT NULL,
  `start` datetime(6) DEFAULT NULL,
  `end` datetime(6) DEFAULT NULL,
  `advertised_start` longtext DEFAULT NULL,
  `course_image_url` longtext NOT NULL,
  `social_sharing_url` longtext DEFAULT NULL,
  `end_of_course_survey_url` longtext DEFAULT NULL,
  `certificates_display_behavior` longtext DEFAULT NULL,
  `certificates_show_before_end` tinyint(1) NOT NULL,
  `cert_html_view_enabled` tinyint(1) NOT NULL,
  `has_any_active_web_certificate` tinyint(1) NOT NULL,
  `cert_name_short` longtext NOT NULL,
  `cert_name_long` longtext NOT NULL,
  `lowest_passing_grade` decimal(5,2) DEFAULT NULL,
  `days_early_for_beta` double DEFAULT NULL,
  `mobile_available` tinyint(1) NOT NULL,
  `visible_to_staff_only` tinyint(1) NOT NULL,
  `_pre_requisite_courses_json` longtext NOT NULL,
  `enrollment_start` datetime(6) DEFAULT NULL,
  `enrollment_end` datetime(6) DEFAULT NULL,
  `enrollment_domain` longtext DEFAULT NULL,
  `invitation_only` tinyint(1) NOT NULL,
  `max_student_enrollments_allowed` int(11) DEFAULT NULL,
  `announcement` datetime(6) DEFAULT NULL,
  `catalog_visibility` longtext DEFAULT NULL,
  `course_video_url` longtext DEFAULT NULL,
  `effort` longtext DEFAULT NULL,
  `short_description` longtext DEFAULT NULL,
  `org` longtext NOT NULL,
  `self_paced` tinyint(1) NOT NULL,
  `marketing_url` longtext DEFAULT NULL,
  `eligible_for_financial_aid` tinyint(1) NOT NULL,
  `language` longtext DEFAULT NULL,
  `certificate_available_date` datetime(6) DEFAULT NULL,
  `end_date` datetime(6) DEFAULT NULL,
  `start_date` datetime(6) DEFAULT NULL,
  `banner_image_url` longtext NOT NULL,
  `has_highlights` tinyint(1) DEFAULT NULL,
  `allow_proctoring_opt_out` tinyint(1) NOT NULL,
  `enable_proctored_exams` tinyint(1) NOT NULL,
  `proctoring_escalation_email` longtext DEFAULT NULL,
  `proctoring_provider` longtext DEFAULT NULL,
  `entrance_exam_enabled` tinyint(1) NOT NULL,
  `entrance_exam_id` varchar(255) NOT NULL,
  `entrance_exam_minimum_score_pct` double NOT NULL,
  `external_id` varchar(128) DEFAULT NULL,
  `force_on_flexible_peer_openassessments` tinyint(1) NOT NULL,
  PRIMARY KEY (`id`)
) {_OPTIONS}""",
    # `id` became an unsigned BIGINT in the Juniper release (courseware 0011_csm_id_bigint).
    "courseware_studentmodule": f"""CREATE TABLE `courseware_studentmodule` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `module_type` varchar(32) NOT NULL,
  `module_id` varchar(255) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `state` longtext DEFAULT NULL,
  `grade` double DEFAULT NULL,
  `max_grade` double DEFAULT NULL,
  `done` varchar(8) NOT NULL,
  `created` datetime(6) NOT NULL,
  `modified` datetime(6) NOT NULL,
  `student_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `courseware_studentmodule_student_id_module_id_cou_48e8deef_uniq`
    (`student_id`,`module_id`,`course_id`),
  KEY `courseware_studentmodule_module_type_f4f8863f` (`module_type`),
  KEY `courseware_studentmodule_course_id_0637cb49` (`course_id`),
  KEY `courseware_studentmodule_grade_adac1ba7` (`grade`),
  KEY `courseware_studentmodule_created_9976b4ad` (`created`),
  KEY `courseware_studentmodule_modified_f6a0b0cc` (`modified`),
  KEY `courseware_stats` (`module_id`,`grade`,`student_id`)
) {_OPTIONS}""",
    "grades_persistentcoursegrade": f"""CREATE TABLE `grades_persistentcoursegrade` (
  `created` datetime(6) NOT NULL,
  `modified` datetime(6) NOT NULL,
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `user_id` int(11) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `course_edited_timestamp` datetime(6) DEFAULT NULL,
  `course_version` varchar(255) NOT NULL,
  `grading_policy_hash` varchar(255) NOT NULL,
  `percent_grade` double NOT NULL,
  `letter_grade` varchar(255) NOT NULL,
  `passed_timestamp` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `grades_persistentcoursegrade_course_id_user_id_d7b585c9_uniq` (`course_id`,`user_id`),
  KEY `grades_persistentcoursegrade_user_id_b2296589` (`user_id`),
  KEY `grades_persistentcoursegr_passed_timestamp_course_i_27d4396e_idx`
    (`passed_timestamp`,`course_id`),
  KEY `grades_persistentcoursegrade_modified_course_id_0e2ef09a_idx` (`modified`,`course_id`)
) {_OPTIONS}""",
    "student_manualenrollmentaudit": f"""CREATE TABLE `student_manualenrollmentaudit` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `enrolled_email` varchar(255) NOT NULL,
  `time_stamp` datetime(6) DEFAULT NULL,
  `state_transition` varchar(255) NOT NULL,
  `reason` longtext DEFAULT NULL,
  `enrolled_by_id` int(11) DEFAULT NULL,
  `enrollment_id` int(11) DEFAULT NULL,
  `role` varchar(64) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `student_manualenroll_enrolled_by_id_1217a0dc_fk_auth_user` (`enrolled_by_id`),
  KEY `student_manualenroll_enrollment_id_decc94fe_fk_student_c` (`enrollment_id`),
  KEY `student_manualenrollmentaudit_enrolled_email_47ce6524` (`enrolled_email`)
) {_OPTIONS}""",
    "student_courseenrollmentallowed": f"""CREATE TABLE `student_courseenrollmentallowed` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `email` varchar(255) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `auto_enroll` tinyint(1) NOT NULL,
  `created` datetime(6) DEFAULT NULL,
  `user_id` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `student_courseenrollmentallowed_email_course_id_1e23ed5e_uniq` (`email`,`course_id`),
  KEY `student_courseenrollmentallowed_email_969706a0` (`email`),
  KEY `student_courseenrollmentallowed_course_id_67eff667` (`course_id`),
  KEY `student_courseenrollmentallowed_created_b2066658` (`created`),
  KEY `student_courseenrollmentallowed_user_id_5875cce6_fk_auth_user_id` (`user_id`)
) {_OPTIONS}""",
    "certificates_generatedcertificate": f"""CREATE TABLE `certificates_generatedcertificate` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `course_id` varchar(255) NOT NULL,
  `verify_uuid` varchar(32) NOT NULL,
  `download_uuid` varchar(32) NOT NULL,
  `download_url` varchar(128) NOT NULL,
  `grade` varchar(5) NOT NULL,
  `key` varchar(32) NOT NULL,
  `distinction` tinyint(1) NOT NULL,
  `status` varchar(32) NOT NULL,
  `mode` varchar(32) NOT NULL,
  `name` varchar(255) NOT NULL,
  `created_date` datetime(6) NOT NULL,
  `modified_date` datetime(6) NOT NULL,
  `error_reason` varchar(512) NOT NULL,
  `user_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `certificates_generatedce_user_id_course_id_fc1bb3ee_uniq` (`user_id`,`course_id`),
  KEY `certificates_generatedcertificate_verify_uuid_97405316` (`verify_uuid`)
) {_OPTIONS}""",
    "course_groups_cohortmembership": f"""CREATE TABLE `course_groups_cohortmembership` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `course_id` varchar(255) NOT NULL,
  `course_user_group_id` int(11) NOT NULL,
  `user_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `course_groups_cohortmembership_user_id_course_id_c247eb7f_uniq`
    (`user_id`,`course_id`),
  KEY `course_groups_cohort_course_user_group_id_6ea50b45_fk_course_gr` (`course_user_group_id`)
) {_OPTIONS}""",
    "course_groups_coursecohort": f"""CREATE TABLE `course_groups_coursecohort` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `assignment_type` varchar(20) NOT NULL,
  `course_user_group_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `course_user_group_id` (`course_user_group_id`)
) {_OPTIONS}""",
    "course_groups_coursecohortssettings": f"""CREATE TABLE `course_groups_coursecohortssettings` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `is_cohorted` tinyint(1) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `cohorted_discussions` longtext DEFAULT NULL,
  `always_cohort_inline_discussions` tinyint(1) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `course_id` (`course_id`)
) {_OPTIONS}""",
    "course_groups_courseusergroup": f"""CREATE TABLE `course_groups_courseusergroup` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(255) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `group_type` varchar(20) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `course_groups_courseusergroup_name_course_id_b767231d_uniq` (`name`,`course_id`),
  KEY `course_groups_courseusergroup_course_id_902aea4c` (`course_id`)
) {_OPTIONS}""",
    "course_groups_courseusergroup_users": f"""CREATE TABLE `course_groups_courseusergroup_users` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `courseusergroup_id` int(11) NOT NULL,
  `user_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `course_groups_courseuser_courseusergroup_id_user__694e8c30_uniq`
    (`courseusergroup_id`,`user_id`),
  KEY `course_groups_course_user_id_28aff981_fk_auth_user` (`user_id`)
) {_OPTIONS}""",
    "course_groups_courseusergrouppartitiongroup": f"""CREATE TABLE
  `course_groups_courseusergrouppartitiongroup` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `partition_id` int(11) NOT NULL,
  `group_id` int(11) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  `updated_at` datetime(6) NOT NULL,
  `course_user_group_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `course_user_group_id` (`course_user_group_id`)
) {_OPTIONS}""",
    "course_groups_unregisteredlearnercohortassignments": f"""CREATE TABLE
  `course_groups_unregisteredlearnercohortassignments` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `email` varchar(255) NOT NULL,
  `course_id` varchar(255) NOT NULL,
  `course_user_group_id` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `course_groups_unregister_course_id_email_81a9d1db_uniq` (`course_id`,`email`),
  KEY `course_groups_unregi_course_user_group_id_c1c8a247_fk_course_gr` (`course_user_group_id`),
  KEY `course_groups_unregisteredl_email_05d0e40e` (`email`)
) {_OPTIONS}""",
}

# A column definition line is the back-quoted name then the type; key lines do not start so.
_COLUMN_RE = re.compile(r"^  `(\w+)` [a-z]", re.MULTILINE)
_SECONDARY_KEY_RE = re.compile(r"^  ((?:UNIQUE )?KEY `(\w+)`\s+\([^)]*\))", re.MULTILINE)
# Building these tables' secondary indexes after their rows are in (one sorted build per index)
# is much faster than maintaining them row by row once they outgrow the buffer pool.
_DEFERRED_INDEX_TABLES = frozenset(("courseware_studentmodule",))

_SECOND = 1_000_000  # times are handled as integer microseconds before the reference time
_MINUTE = 60 * _SECOND
_DAY = 86_400 * _SECOND
_HISTORY = 730 * _DAY  # activity spreads over about two years
_RECENT = 90 * _MINUTE  # "recently modified" window of courseware_studentmodule
_RECENT_SHARE = 0.03  # share of studentmodule rows modified within _RECENT
_HOT_COURSE_SHARE = 0.10  # share of courses holding most of the recent rows
_AWKWARD_RATE = 0.03  # share of text values swapped for awkward ones
_BATCH_ROWS = 2000  # rows per multi-row INSERT batch
_ZERO_DATE = "0000-00-00 00:00:00"
_NO_LIMIT = 1 << 32  # length of a longtext column, in characters

# Texts that trip naive CSV writers, SQL escaping and charset handling (NULL comes on top of
# them in nullable columns). Texts longer than a column are left out for that column.
_AWKWARD: tuple[str, ...] = (
    "",
    "NULL",
    "\\N",
    'She said "hello"',
    "O'Brien",
    "Doe, Jane",
    "C:\\Users\\edx\\notes.txt",
    "ends with a backslash\\",
    "first line\nsecond line",
    "carriage\rreturn",
    "windows\r\nline end",
    "tab\tseparated",
    "grinning \U0001f600 face",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 text",
    "José Ñúñez Müller",
    "王小明",
    "김민준",
    "مرحبا بالعالم",
    " padded ",
    "\"\\N\",\t'\U0001f600'\r\n\\",
    '"',
    "'",
    ",",
    "\\",
    "\n",
    "\r\n",
    "\t",
    "\U0001f600",
    "é",
)

_WORDS = (
    "the", "learner", "answer", "is", "probably", "correct", "because", "energy", "equals",
    "mass", "times", "light", "squared", "según", "el", "teorema", "de", "Pitágoras", "données",
    "über", "naïve", "café", "数据", "学习", "\U0001f600", "\U0001d518", "\"quoted\"", "it's",
    "a,b", "back\\slash", "NULL", "\\N", "line\nbreak", "tab\there", "crlf\r\nend",
)  # fmt: skip

_ORGS = ("edX", "OpenedX", "UNAMx", "Aulasneo", "MITx", "HarvardX")
_SUBJECTS = ("CS", "MATH", "PHYS", "HIST", "BIO", "ECON", "DATA", "ART", "LAW", "CHEM", "PSY")
_RUNS = ("2023_T1", "2023_T2", "2024_T1", "2024_T2", "2025_T1", "2025_T2", "self_paced")
_TITLES = (
    "Introduction to Computer Science", "Calculus I", "Data Science Fundamentals",
    "World History", "Molecular Biology", "Principles of Economics", "Art Appreciation",
    "Constitutional Law", "Organic Chemistry", "Introducción a la Programación",
    "Statistique appliquée", "Psychology 101", "Machine Learning", "Physics: Mechanics",
)  # fmt: skip
_FIRST_NAMES = (
    "Ana", "Juan", "María", "José", "Wei", "Yuki", "Olga", "Ahmed", "Fatima", "John", "Mary",
    "Pierre", "Zoë", "Søren", "Łukasz", "Chloé", "Ngozi", "Priya", "Hiroshi", "Lucía", "Émile",
)  # fmt: skip
_LAST_NAMES = (
    "García", "Smith", "Müller", "Nakamura", "Ivanova", "Haddad", "Okafor", "Dubois", "Kowalski",
    "Silva", "Chen", "O'Neil", "Fernández", "Johansson", "Kim", "Patel", "Nguyễn", "Sánchez",
)  # fmt: skip
# (given name, family name) pairs written without Latin letters.
_NATIVE_NAMES = (("小明", "王"), ("花子", "山田"), ("민준", "김"), ("Алексей", "Смирнов"))
_CITIES = ("Buenos Aires", "México", "Bogotá", "São Paulo", "Montréal", "東京", "Zürich", "Lagos")
_COUNTRIES = ("US", "MX", "AR", "CO", "ES", "FR", "IN", "CN", "JP", "BR", "NG", "DE")
_ENROLLMENT_MODES = (
    ("audit", 60),
    ("verified", 24),
    ("honor", 10),
    ("no-id-professional", 3),
    ("professional", 1),
    ("masters", 2),
)
_CERTIFICATE_MODES = frozenset(mode for mode, _ in _ENROLLMENT_MODES)
_BLOCK_TYPES = (
    ("problem", 34),
    ("video", 22),
    ("sequential", 14),
    ("chapter", 8),
    ("html", 10),
    ("openassessment", 4),
    ("drag-and-drop-v2", 4),
    ("poll", 2),
    ("lti_consumer", 2),
)
_BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_BASE64 = _BASE62 + "+/"


def create_schema(conn: pymysql.connections.Connection) -> None:
    """Drop and create every table of TABLES in the connection's current database."""
    with conn.cursor() as cur:
        for name, ddl in TABLES.items():
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
            cur.execute(ddl)
    conn.commit()


def generate(
    conn: pymysql.connections.Connection,
    *,
    users: int = 2000,
    courses: int = 20,
    studentmodule_rows: int = 20000,
    seed: int = 42,
    reference_time: datetime | None = None,
) -> dict[str, int]:
    """Fill every table of TABLES with deterministic synthetic data; return row counts per table."""
    if users < 1 or courses < 1 or studentmodule_rows < 0:
        raise ValueError("users and courses must be positive and studentmodule_rows not negative")
    if reference_time is not None and reference_time.tzinfo is not None:
        raise ValueError("reference_time must be a naive datetime")
    # 4-byte characters (emoji) only survive a utf8mb4 connection.
    if conn.charset != "utf8mb4":
        raise ValueError(f"the connection charset must be utf8mb4, not {conn.charset}")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT NOW(), @@SESSION.unique_checks, @@SESSION.foreign_key_checks,"
            " @@SESSION.sql_mode"
        )
        row = cur.fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        server_now, *saved = row
        # Bulk-load settings; the permissive sql_mode lets the legacy zero dates in.
        cur.execute(
            "SET SESSION unique_checks=0, foreign_key_checks=0, sql_mode='NO_ENGINE_SUBSTITUTION'"
        )
    if reference_time is None:
        reference_time = server_now.replace(microsecond=0)
    try:
        dataset = _Dataset(users, courses, studentmodule_rows, seed, reference_time)
        return {name: _insert(conn, name, dataset.rows(name)) for name in TABLES}
    finally:
        with conn.cursor() as cur:
            cur.execute("SET SESSION unique_checks=%s, foreign_key_checks=%s, sql_mode=%s", saved)


def _insert(conn: pymysql.connections.Connection, table: str, rows: Iterable[Sequence[Any]]) -> int:
    """Insert rows in multi-row batches inside one transaction; return how many were inserted."""
    columns = _COLUMN_RE.findall(TABLES[table])
    sql = (
        f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    keys = _SECONDARY_KEY_RE.findall(TABLES[table]) if table in _DEFERRED_INDEX_TABLES else []
    count = 0
    iterator = iter(rows)
    with conn.cursor() as cur:
        if keys:
            cur.execute(f"ALTER TABLE `{table}` {', '.join(f'DROP KEY `{k}`' for _, k in keys)}")
        conn.begin()
        try:
            while batch := list(islice(iterator, _BATCH_ROWS)):
                cur.executemany(sql, batch)
                count += len(batch)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        if keys:
            # Re-adding a UNIQUE key also proves the generated rows honour it.
            cur.execute(f"ALTER TABLE `{table}` {', '.join(f'ADD {d}' for d, _ in keys)}")
    return count


class _Awkward:
    """Swaps a few values for awkward ones, taken in rotation so that every kind shows up."""

    def __init__(self, rng: random.Random, rate: float = _AWKWARD_RATE) -> None:
        self._rng = rng
        self._rate = rate
        self._turn = 0

    def hit(self) -> bool:
        """True at the awkward rate."""
        return self._rng.random() < self._rate

    def text(self, value: str, length: int = _NO_LIMIT, *, always: bool = False) -> str:
        """value or, at the awkward rate (or always), the next awkward text of at most length."""
        if not (always or self.hit()):
            return value
        return _AWKWARD[self._next(False, length)]

    def nullable(
        self, value: str | None, length: int = _NO_LIMIT, *, always: bool = False
    ) -> str | None:
        """Like text, for a nullable column: NULL takes its turn among the awkward values."""
        if not (always or self.hit()):
            return value
        index = self._next(True, length)
        return None if index == len(_AWKWARD) else _AWKWARD[index]

    def _next(self, nullable: bool, length: int) -> int:
        """Index of the next awkward value that fits the column; len(_AWKWARD) stands for NULL."""
        while True:
            index = self._turn % (len(_AWKWARD) + 1)
            self._turn += 1
            if index == len(_AWKWARD):
                if nullable:
                    return index
            elif len(_AWKWARD[index]) <= length:
                return index


@dataclass(frozen=True)
class _Course:
    key: str
    org: str
    code: str
    run: str
    title: str
    weight: float
    hot: bool
    age: int  # creation, in microseconds before the reference time
    published_age: int | None  # last publish; None when unknown
    start_age: int  # negative for courses starting in the future
    end_age: int | None
    lowest_passing_grade: Decimal | None
    letter_grades: bool
    version: str
    grading_policy_hash: str

    @property
    def passing(self) -> float:
        """The pass mark as a fraction (edX defaults to 0.5 when not set)."""
        return float(self.lowest_passing_grade) if self.lowest_passing_grade is not None else 0.5

    def usage_key(self, block_type: str, block_id: str) -> str:
        """The block-v1 usage key of one of the course's blocks."""
        return f"block-v1:{self.org}+{self.code}+{self.run}+type@{block_type}+block@{block_id}"


@dataclass(frozen=True)
class _User:
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    age: int  # date_joined, in microseconds before the reference time
    is_staff: bool


@dataclass(frozen=True)
class _Enrollment:
    id: int
    user: _User
    course: int  # index into _Dataset.courses
    age: int
    mode: str
    is_active: bool


@dataclass(frozen=True)
class _Grade:
    enrollment: _Enrollment
    percent: float
    passed: bool
    age: int
    modified_age: int


@dataclass(frozen=True)
class _Cohort:
    id: int
    course: int
    name: str
    members: tuple[int, ...]


class _Dataset:
    """Everything the tables share (courses, users, enrollments, grades) plus row builders."""

    def __init__(self, users: int, courses: int, studentmodule_rows: int, seed: int, now: datetime):
        self.seed = seed
        self.now = now
        self.studentmodule_rows = studentmodule_rows
        self.courses = self._make_courses(courses)
        self.users = self._make_users(users)
        self.enrollments = self._make_enrollments()
        self.enrolled: list[list[int]] = [[] for _ in self.courses]
        for enrollment in self.enrollments:
            self.enrolled[enrollment.course].append(enrollment.user.id)
        self.grades = self._make_grades()
        self.cohorts = self._make_cohorts()
        self.staff = [u for u in self.users if u.is_staff]

    def rng(self, purpose: str) -> random.Random:
        """A generator of its own per purpose, so one table's draws never shift another's."""
        return random.Random(f"{self.seed}/{purpose}")

    def at(self, age: int) -> datetime:
        """The datetime `age` microseconds before the reference time."""
        return self.now - timedelta(microseconds=age)

    def rows(self, table: str) -> Iterable[Sequence[Any]]:
        """The rows of one table, in its column order."""
        builder: Callable[[random.Random], Iterable[Sequence[Any]]]
        builder = getattr(self, f"_rows_{table}")
        return builder(self.rng(table))

    # Shared entities -------------------------------------------------------------------------

    def _make_courses(self, count: int) -> list[_Course]:
        rng = self.rng("courses")
        ranks = list(range(1, count + 1))
        rng.shuffle(ranks)
        # Zipf-like sizes: a few big courses hold most learners and activity.
        weights = [1.0 / rank**1.1 for rank in ranks]
        by_size = sorted(range(count), key=lambda i: (-weights[i], i))
        # The runner-up course always has recent activity, so the recent rows are plentiful.
        hot = [by_size[min(1, count - 1)]]
        others = [i for i in range(count) if i != hot[0]]
        hot += rng.sample(others, max(1, round(count * _HOT_COURSE_SHARE)) - 1)
        result: list[_Course] = []
        for i in range(count):
            if i == 0:
                org, code, run = "edX", "DemoX", "Demo_Course"
            elif i == 1:
                org, code, run = "OpenedX", "Data.Sci-101_x", "2024_T1"
            else:
                org, code = rng.choice(_ORGS), f"{rng.choice(_SUBJECTS)}{100 + i}"
                run = rng.choice(_RUNS)
            age = rng.randrange(_HISTORY // 2, _HISTORY + 365 * _DAY)
            start_age = rng.randrange(-60 * _DAY, _HISTORY)
            end_age = None if rng.random() < 0.25 else start_age - rng.randrange(45, 200) * _DAY
            passing = rng.choice((Decimal("0.50"), Decimal("0.60"), Decimal("0.70"), None))
            result.append(
                _Course(
                    key=f"course-v1:{org}+{code}+{run}",
                    org=org,
                    code=code,
                    run=run,
                    title=rng.choice(_TITLES),
                    weight=weights[i],
                    hot=i in hot,
                    age=age,
                    published_age=None if rng.random() < 0.1 else rng.randrange(_DAY, age),
                    start_age=start_age,
                    end_age=end_age,
                    lowest_passing_grade=passing,
                    letter_grades=rng.random() < 0.3,
                    version=f"{rng.getrandbits(96):024x}",
                    grading_policy_hash="".join(rng.choices(_BASE64, k=27)) + "=",
                )
            )
        return result

    def _make_users(self, count: int) -> list[_User]:
        rng = self.rng("users")
        awkward = _Awkward(rng)
        result: list[_User] = []
        for uid in range(1, count + 1):
            if rng.random() < 0.05:
                first, last = rng.choice(_NATIVE_NAMES)
            else:
                first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            slug = _ascii(first[:1] + last).lower() or "learner"
            # Unicode usernames exist where ENABLE_UNICODE_USERNAME is on.
            # The underscore keeps them apart from the letters-then-digits ASCII usernames.
            username = f"{first}{last}_{uid}" if rng.random() < 0.02 else f"{slug}{uid}"
            domain = rng.choice(("example.com", "example.org", "correo.example.mx"))
            email = f"{_ascii(first).lower() or 'user'}.{slug}+{uid}@{domain}"
            old = rng.random() < 0.15
            age = rng.randrange(_HISTORY, 2 * _HISTORY) if old else rng.randrange(_DAY, _HISTORY)
            result.append(
                _User(
                    id=uid,
                    username=username,
                    email=email,
                    first_name=awkward.text(first, 150),
                    last_name=awkward.text(last, 150),
                    age=age,
                    is_staff=uid == 1 or rng.random() < 0.01,
                )
            )
        return result

    def _make_enrollments(self) -> list[_Enrollment]:
        rng = self.rng("enrollments")
        awkward = _Awkward(rng, rate=0.01)
        cumulative = list(accumulate(c.weight for c in self.courses))
        modes, mode_weights = zip(*_ENROLLMENT_MODES, strict=True)
        drafts = []
        for user in self.users:
            wanted = min(len(self.courses), 1 + int(rng.expovariate(0.8)))
            chosen: list[int] = []
            for _ in range(8 * wanted):  # bounded: heavy skew can make the last picks rare
                course = bisect_right(cumulative, rng.random() * cumulative[-1])
                if course not in chosen:
                    chosen.append(course)
                    if len(chosen) == wanted:
                        break
            for course in chosen:
                mode = awkward.text(rng.choices(modes, mode_weights)[0], 100)
                age = rng.randrange(0, user.age)
                drafts.append((age, user, course, mode, rng.random() < 0.92))
        # Ids grow with time, as in a real table.
        drafts.sort(key=lambda d: (-d[0], d[1].id, d[2]))
        return [
            _Enrollment(id=i, user=user, course=course, age=age, mode=mode, is_active=active)
            for i, (age, user, course, mode, active) in enumerate(drafts, start=1)
        ]

    def _make_grades(self) -> list[_Grade]:
        rng = self.rng("grades")
        result: list[_Grade] = []
        for enrollment in self.enrollments:
            if rng.random() >= 0.65:
                continue
            course = self.courses[enrollment.course]
            if rng.random() < 0.3:
                percent = 0.0
            else:
                percent = rng.betavariate(2.0, 1.5)
                # Most grades are rounded like edX does; some keep full double precision.
                percent = percent if rng.random() < 0.1 else round(percent, 2)
            age = rng.randrange(0, enrollment.age + 1)
            recent = rng.random() < 0.02
            modified_age = (
                rng.randrange(0, min(age, _RECENT) + 1) if recent else rng.randrange(age + 1)
            )
            passed = percent >= course.passing
            result.append(_Grade(enrollment, percent, passed, age, modified_age))
        return result

    def _make_cohorts(self) -> list[_Cohort]:
        rng = self.rng("cohorts")
        cohorted = sorted(rng.sample(range(len(self.courses)), max(1, len(self.courses) // 4)))
        names = ("Default Group", "Cohorte A — ñ", 'Group "B"', "组 C", "Équipe, D")
        result: list[_Cohort] = []
        for course in cohorted:
            # Memberships stay a handful per course even in big courses.
            learners = self.enrolled[course][:60]
            groups = names[: rng.randint(2, 4)]
            members: list[list[int]] = [[] for _ in groups]
            for uid in learners:
                if rng.random() < 0.8:
                    members[rng.randrange(len(groups))].append(uid)
            for name, group in zip(groups, members, strict=True):
                result.append(_Cohort(len(result) + 1, course, name, tuple(group)))
        return result

    # Row builders, one per table ---------------------------------------------------------------

    def _rows_student_anonymoususerid(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        count = min(len(self.enrollments), max(20, len(self.users) // 50))
        picked = sorted(rng.sample(range(len(self.enrollments)), count))
        for row_id, index in enumerate(picked, start=1):
            enrollment = self.enrollments[index]
            # Older anonymous ids were per user, not per course: their course_id is ''.
            course = "" if row_id % 10 == 0 else self.courses[enrollment.course].key
            yield (row_id, f"{rng.getrandbits(128):032x}", course, enrollment.user.id)

    def _rows_site_configuration_siteconfiguration(
        self, rng: random.Random
    ) -> Iterator[tuple[Any, ...]]:
        values = {
            "PLATFORM_NAME": "Panorama Academy \U0001f600",
            "SITE_NAME": "lms.example.com",
            "course_org_filter": sorted({c.org for c in self.courses}),
            "contact_email": "soporte@example.com",
            "homepage_overlay_html": '<h1>Bienvenidos a "Panorama"</h1>\r\n<p>Learn\\grow</p>',
            "ENABLE_THIRD_PARTY_AUTH": rng.random() < 0.5,
            "COURSE_ABOUT_VISIBILITY_PERMISSION": "see_exists",
        }
        yield (1, 1, 1, json.dumps(values))
        yield (2, 2, 0, json.dumps({"PLATFORM_NAME": "Studio", "LANGUAGE_CODE": "es-419"}))

    def _rows_auth_user(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        zero_dates = set(rng.sample(range(1, len(self.users) + 1), min(2, len(self.users))))
        for user in self.users:
            if rng.random() < 0.02:
                password = "!" + "".join(rng.choices(_BASE62, k=40))  # unusable password
            else:
                salt = "".join(rng.choices(_BASE62, k=22))
                password = f"pbkdf2_sha256$600000${salt}${''.join(rng.choices(_BASE64, k=43))}="
            last_login: datetime | str | None
            if user.id in zero_dates:
                last_login = _ZERO_DATE
            elif rng.random() < 0.08:
                last_login = None
            else:
                last_login = self.at(rng.randrange(0, user.age))
            yield (
                user.id,
                password,
                last_login,
                int(user.id == 1),
                user.username,
                user.first_name,
                user.last_name,
                user.email,
                int(user.is_staff),
                int(rng.random() < 0.95),
                self.at(user.age),
            )

    def _rows_student_courseenrollment(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        for e in self.enrollments:
            created = None if rng.random() < 0.005 else self.at(e.age)
            yield (e.id, self.courses[e.course].key, created, int(e.is_active), e.mode, e.user.id)

    def _rows_auth_userprofile(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        awkward = _Awkward(rng)
        long_goals = set(rng.sample(range(1, len(self.users) + 1), min(3, len(self.users))))
        long_bios = set(rng.sample(range(1, len(self.users) + 1), min(3, len(self.users))))
        educations = ("p", "m", "b", "a", "hs", "jhs", "el", "none", "other", "")
        for user in self.users:
            city = rng.choice(_CITIES) if rng.random() < 0.4 else None
            address = f"Calle {rng.randint(1, 999)}\n{city or 'Springfield'}" if city else None
            goals = rng.choice((None, "", "Get a better job", "Aprender más sobre datos"))
            if user.id in long_goals:
                goals = _long_text(rng, 12_000)
            bio = None if rng.random() < 0.8 else _long_text(rng, rng.randint(20, 300))
            if user.id in long_bios:
                bio = _long_text(rng, 3000)
            image_age = rng.randrange(0, user.age) if rng.random() < 0.1 else None
            yield (
                user.id,
                awkward.text(f"{user.first_name} {user.last_name}".strip(), 255),
                awkward.text(rng.choice(("", "", "", '{"session_id": null}'))),
                "course.xml",
                awkward.text(rng.choice(("", "", "en", "es")), 255),
                awkward.text("", 255),
                None if rng.random() < 0.3 else rng.randint(1950, 2008),
                awkward.nullable(rng.choice((None, "m", "f", "o", "")), 6),
                awkward.nullable(rng.choice((None, *educations)), 6),
                awkward.nullable(address),
                awkward.nullable(city),
                awkward.nullable(rng.choice((None, "", *_COUNTRIES)), 2),
                awkward.nullable(goals),
                awkward.nullable(bio, 3000),
                None if image_age is None else self.at(image_age),
                user.id,
                None if rng.random() < 0.9 else f"+1 555 01{rng.randint(0, 99):02d}",
                rng.choice((None, None, None, "CA", "NY", "TX")),
            )

    def _rows_student_courseaccessrole(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        staff = self.staff or self.users[:1]
        seen: set[tuple[int, str, str, str]] = set()
        rows = []
        for index, course in enumerate(self.courses):
            rows.append((staff[index % len(staff)].id, course.org, course.key, "instructor"))
            rows.append((rng.choice(staff).id, course.org, course.key, "staff"))
            learners = self.enrolled[index]
            if learners and rng.random() < 0.3:
                rows.append((rng.choice(learners), course.org, course.key, "beta_testers"))
            if rng.random() < 0.2:
                rows.append((rng.choice(staff).id, course.org, course.key, "data_researcher"))
        # Course creators are granted for a whole org (or everything) with an empty course_id.
        rows += [(s.id, "", "", "course_creator_group") for s in staff[:3]]
        row_id = 0
        for row in rows:
            if row not in seen:
                seen.add(row)
                row_id += 1
                yield (row_id, row[1], row[2], row[3], row[0])

    def _rows_course_overviews_courseoverview(
        self, rng: random.Random
    ) -> Iterator[tuple[Any, ...]]:
        # A few courses carry awkward values in all their text columns, so that even a small
        # table holds every kind of them while most rows stay clean.
        count = len(self.courses)
        odd_courses = set(rng.sample(range(count), min(count, max(2, count // 20))))
        awkward = _Awkward(rng, rate=0.0)
        text, nullable = awkward.text, awkward.nullable
        for index, course in enumerate(self.courses):
            odd = index in odd_courses
            asset = f"/asset-v1:{course.org}+{course.code}+{course.run}+type@asset+block@"
            start = self.at(course.start_age)
            end = None if course.end_age is None else self.at(course.end_age)
            enrollment_start = self.at(course.start_age + 30 * _DAY) if rng.random() < 0.7 else None
            created_age = course.age
            modified_age = rng.randrange(0, created_age)
            yield (
                self.at(created_age),
                self.at(modified_age),
                rng.choice((16, 17, 18, 19)),
                course.key,
                course.usage_key("course", "course"),
                nullable(course.title, always=odd),
                text(course.code, always=odd),
                text(course.org, always=odd),
                start,
                end,
                nullable(rng.choice((None, None, "Spring 2025")), always=odd),
                text(asset + "images_course_image.jpg", always=odd),
                nullable(None, always=odd),
                nullable(None, always=odd),
                nullable(rng.choice(("end", "early_no_info")), always=odd),
                0,
                1,
                int(rng.random() < 0.6),
                text("", always=odd),
                text("", always=odd),
                course.lowest_passing_grade,
                None,
                int(rng.random() < 0.5),
                0,
                "[]",
                enrollment_start,
                None if rng.random() < 0.8 else end,
                None,
                int(rng.random() < 0.1),
                None if rng.random() < 0.9 else rng.choice((100, 500, 10_000)),
                None if rng.random() < 0.7 else self.at(course.start_age + 60 * _DAY),
                "both",
                nullable(None, always=odd),
                nullable(rng.choice((None, "4 hours/week", "3:00")), always=odd),
                nullable(f"Learn {course.title.lower()} with {course.org}.", always=odd),
                course.org,
                int(course.run == "self_paced"),
                nullable(None, always=odd),
                1,
                nullable(rng.choice(("en", "es", "fr", None)), always=odd),
                None,
                end,
                start,
                text(asset + "banner.jpg" if rng.random() < 0.3 else "", always=odd),
                rng.choice((None, 0, 1)),
                0,
                int(rng.random() < 0.1),
                None,
                "null",
                0,
                "",
                0.65,
                None,
                0,
            )

    def _rows_courseware_studentmodule(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        total = self.studentmodule_rows
        courses = self.courses
        counts = _apportion(
            total, [c.weight if self.enrolled[i] else 0.0 for i, c in enumerate(courses)]
        )
        catalogs: list[list[tuple[str, str, str, float]]] = []
        pairs: list[list[int]] = []
        for index, course in enumerate(courses):
            learners = len(self.enrolled[index])
            if not counts[index]:
                catalogs.append([])
                pairs.append([])
                continue
            # Enough blocks that every (learner, block) pair drawn below is distinct.
            blocks = max(rng.randint(40, 160), -(-2 * counts[index] // learners))
            catalogs.append(_block_catalog(rng, course, blocks))
            pairs.append(rng.sample(range(learners * blocks), counts[index]))
        order = [index for index, count in enumerate(counts) for _ in range(count)]
        rng.shuffle(order)
        # Creation ages sorted oldest first so that ids grow with time.
        ages = sorted((rng.randrange(_HISTORY) for _ in range(total)), reverse=True)
        hot_rows = sum(count for course, count in zip(courses, counts, strict=True) if course.hot)
        hot_share = hot_rows / total if total else 0.0
        # 90% of the recently modified rows sit in the hot courses, the rest anywhere else.
        p_hot = min(0.9, 0.9 * _RECENT_SHARE / hot_share) if hot_share else 0.0
        p_cold = 0.1 * _RECENT_SHARE / (1 - hot_share) if hot_share < 1 else 0.0
        # A few learner texts over 10 kB, placed near these row positions.
        long_states = sorted(rng.sample(range(total), min(total, 4)))
        awkward = _Awkward(rng, rate=0.06)
        used = [0] * len(courses)
        for row_id, (index, age) in enumerate(zip(order, ages, strict=True), start=1):
            course = courses[index]
            pair = pairs[index][used[index]]
            used[index] += 1
            learner, block = divmod(pair, len(catalogs[index]))
            module_type, module_id, block_id, max_points = catalogs[index][block]
            if rng.random() < (p_hot if course.hot else p_cold):
                modified_age = rng.randrange(min(age, _RECENT) + 1)
            elif age > _RECENT + 1:
                # Most rows are touched again within days of their creation, never recently.
                delay = int(rng.expovariate(1 / (3 * _DAY)))
                if delay >= age - _RECENT:
                    delay = rng.randrange(age - _RECENT)
                modified_age = age - delay
            else:
                modified_age = age
            modified = self.at(modified_age)
            long_text = bool(long_states) and row_id > long_states[0] and module_type in _TEXTUAL
            if long_text:
                long_states.pop(0)
            state, grade, max_grade = _state(
                rng, awkward, module_type, block_id, max_points, modified, long_text, row_id
            )
            yield (
                row_id,
                module_type,
                module_id,
                course.key,
                state,
                grade,
                max_grade,
                "na",
                self.at(age),
                modified,
                self.enrolled[index][learner],
            )

    def _rows_grades_persistentcoursegrade(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        awkward = _Awkward(rng)
        for row_id, grade in enumerate(self.grades, start=1):
            course = self.courses[grade.enrollment.course]
            if grade.passed and course.letter_grades and grade.percent >= 0.8:
                letter = "A"
            else:
                letter = "Pass" if grade.passed else ""
            passed_at = None
            if grade.passed:
                passed_at = self.at(rng.randint(grade.modified_age, grade.age))
            edited = course.published_age
            yield (
                self.at(grade.age),
                self.at(grade.modified_age),
                row_id,
                grade.enrollment.user.id,
                course.key,
                None if edited is None else self.at(edited),
                awkward.text(course.version, 255),
                awkward.text(course.grading_policy_hash, 255),
                grade.percent,
                awkward.text(letter, 255),
                passed_at,
            )

    def _rows_student_manualenrollmentaudit(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        awkward = _Awkward(rng, rate=0.3)
        staff = self.staff or self.users[:1]
        count = min(len(self.enrollments), max(10, len(self.enrollments) // 200))
        picked = sorted(rng.sample(range(len(self.enrollments)), count))
        transitions = (
            "from unenrolled to enrolled",
            "from enrolled to unenrolled",
            "from allowed to enrolled",
            "from unenrolled to allowed to enroll",
        )
        for row_id, index in enumerate(picked, start=1):
            enrollment = self.enrollments[index]
            # Invitations to people without an account have no enrollment yet.
            invited = row_id % 7 == 0
            yield (
                row_id,
                f"invitee{row_id}@example.net" if invited else enrollment.user.email,
                None if row_id % 11 == 0 else self.at(rng.randrange(enrollment.age + 1)),
                transitions[3] if invited else rng.choice(transitions[:3]),
                awkward.nullable(rng.choice((None, "", "Requested by instructor"))),
                None if row_id % 13 == 0 else rng.choice(staff).id,
                None if invited else enrollment.id,
                rng.choice((None, "Learner", "Staff", "Other")),
            )

    def _rows_student_courseenrollmentallowed(
        self, rng: random.Random
    ) -> Iterator[tuple[Any, ...]]:
        count = max(10, len(self.users) // 100)
        # Distinct users, and row ids in invitee emails, keep (email, course_id) unique.
        invited = iter(rng.sample(self.users, min(len(self.users), count // 3)))
        for row_id in range(1, count + 1):
            course = rng.randrange(len(self.courses))
            user = next(invited, None) if row_id % 3 == 0 else None
            email = user.email if user else f"Invitee.{row_id}+{course}@Example.ORG"
            created = None if row_id % 9 == 0 else self.at(rng.randrange(_HISTORY))
            yield (
                row_id,
                email,
                self.courses[course].key,
                int(rng.random() < 0.5),
                created,
                user.id if user else None,
            )

    def _rows_certificates_generatedcertificate(
        self, rng: random.Random
    ) -> Iterator[tuple[Any, ...]]:
        row_id = 0
        for grade in self.grades:
            enrollment = grade.enrollment
            if grade.passed:
                status = "audit_passing" if enrollment.mode == "audit" else "downloadable"
            elif grade.percent > 0 and rng.random() < 0.1:
                audit = enrollment.mode == "audit"
                status = "audit_notpassing" if audit else rng.choice(("notpassing", "unavailable"))
            else:
                continue
            row_id += 1
            downloadable = status == "downloadable"
            created = rng.randint(grade.modified_age, grade.age)
            user = enrollment.user
            name = f"{user.first_name} {user.last_name}".strip()[:255]
            yield (
                row_id,
                self.courses[enrollment.course].key,
                f"{rng.getrandbits(128):032x}",
                f"{rng.getrandbits(128):032x}" if downloadable else "",
                "",
                str(round(grade.percent, 2)),
                f"{rng.getrandbits(128):032x}" if downloadable else "",
                0,
                status,
                enrollment.mode if enrollment.mode in _CERTIFICATE_MODES else "honor",
                name,
                self.at(created),
                self.at(rng.randint(0, created)),
                "",
                user.id,
            )

    def _rows_course_groups_cohortmembership(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        memberships = sorted(
            (uid, cohort.course, cohort.id) for cohort in self.cohorts for uid in cohort.members
        )
        for row_id, (uid, course, cohort_id) in enumerate(memberships, start=1):
            yield (row_id, self.courses[course].key, cohort_id, uid)

    def _rows_course_groups_coursecohort(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        for cohort in self.cohorts:
            kind = "random" if cohort.name == "Default Group" else "manual"
            yield (cohort.id, kind, cohort.id)

    def _rows_course_groups_coursecohortssettings(
        self, rng: random.Random
    ) -> Iterator[tuple[Any, ...]]:
        cohorted = sorted({cohort.course for cohort in self.cohorts})
        for row_id, course in enumerate(cohorted, start=1):
            topics = [f"{rng.getrandbits(160):040x}" for _ in range(rng.randint(0, 3))]
            yield (row_id, 1, self.courses[course].key, json.dumps(topics), 0)

    def _rows_course_groups_courseusergroup(self, rng: random.Random) -> Iterator[tuple[Any, ...]]:
        for cohort in self.cohorts:
            yield (cohort.id, cohort.name, self.courses[cohort.course].key, "cohort")

    def _rows_course_groups_courseusergroup_users(
        self, rng: random.Random
    ) -> Iterator[tuple[Any, ...]]:
        memberships = sorted((cohort.id, uid) for cohort in self.cohorts for uid in cohort.members)
        for row_id, (cohort_id, uid) in enumerate(memberships, start=1):
            yield (row_id, cohort_id, uid)

    def _rows_course_groups_courseusergrouppartitiongroup(
        self, rng: random.Random
    ) -> Iterator[tuple[Any, ...]]:
        row_id = 0
        for cohort in self.cohorts:
            if rng.random() < 0.5:
                continue
            row_id += 1
            created = rng.randrange(_DAY, _HISTORY)
            yield (
                row_id,
                rng.choice((50, 1_234_567)),
                rng.randint(1, 5),
                self.at(created),
                self.at(rng.randrange(created)),
                cohort.id,
            )

    def _rows_course_groups_unregisteredlearnercohortassignments(
        self, rng: random.Random
    ) -> Iterator[tuple[Any, ...]]:
        for row_id, cohort in enumerate(self.cohorts, start=1):
            email = f"future.learner{row_id}@example.net"
            yield (row_id, email, self.courses[cohort.course].key, cohort.id)


# Block types whose state carries free text typed by learners.
_TEXTUAL = frozenset(("problem", "openassessment"))


def _block_catalog(
    rng: random.Random, course: _Course, count: int
) -> list[tuple[str, str, str, float]]:
    """(module_type, module_id, block_id, max_grade) of the blocks, the course block first."""
    types, weights = zip(*_BLOCK_TYPES, strict=True)
    catalog = [("course", course.usage_key("course", "course"), "course", 0.0)]
    for block_type in rng.choices(types, weights, k=count - 1):
        block_id = f"{rng.getrandbits(128):032x}"
        points = float(rng.choice((1, 1, 1, 2, 3, 5, 10)))
        catalog.append((block_type, course.usage_key(block_type, block_id), block_id, points))
    return catalog


def _state(
    rng: random.Random,
    awkward: _Awkward,
    module_type: str,
    block_id: str,
    max_points: float,
    modified: datetime,
    long_text: bool,
    row_id: int,
) -> tuple[str | None, float | None, float | None]:
    """(state, grade, max_grade) of a studentmodule row, state as edX's JSON text."""
    if rng.random() < 0.003:
        return None, None, None
    grade: float | None = None
    max_grade: float | None = None
    text: str | None = None
    if module_type in _TEXTUAL:
        if long_text:
            text = _long_text(rng, rng.randint(10_000, 16_000))
        else:
            text = awkward.text("", always=True) if awkward.hit() else None
    if module_type == "problem":
        key = f"{block_id}_2_1"
        attempts = 0 if rng.random() < 0.15 else rng.randint(1, 5)
        if not attempts and text is None:
            state: dict[str, Any] = {"seed": 1, "input_state": {key: {}}}
        else:
            points = float(rng.randint(0, int(max_points)))
            grade, max_grade = points, max_points
            answer = text if text is not None else rng.choice(("choice_0", "choice_2", "3.14"))
            state = {
                "attempts": max(1, attempts),
                "correct_map": {
                    key: {
                        "answervariable": None,
                        "correctness": "correct" if points == max_points else "incorrect",
                        "hint": "",
                        "hintmode": None,
                        "msg": "",
                        "npoints": None,
                        "queuestate": None,
                    }
                },
                "done": True,
                "input_state": {key: {}},
                "last_submission_time": modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "score": {"raw_earned": points, "raw_possible": max_points},
                "seed": 1,
                "student_answers": {key: answer},
            }
    elif module_type == "openassessment":
        essay = text if text is not None else "My answer is short."
        state = {
            "has_saved": True,
            "saved_response": json.dumps({"parts": [{"text": essay}]}),
            "submission_uuid": f"{rng.getrandbits(128):032x}",
        }
    elif module_type == "video":
        minutes, seconds = divmod(rng.randrange(0, 3600), 60)
        state = {"saved_video_position": f"00:{minutes:02d}:{seconds:02d}"}
        if rng.random() < 0.3:
            state["speed"] = rng.choice((0.75, 1.25, 1.5, 2.0))
    elif module_type == "drag-and-drop-v2":
        grade = max_grade = 1.0
        state = {
            "attempts": rng.randint(1, 3),
            "completed": True,
            "item_state": {
                "0": {"correct": True, "zone": "top"},
                "1": {"correct": True, "zone": "middle"},
            },
            "raw_earned": 1.0,
        }
    elif module_type == "poll":
        state = {"choice": rng.choice("RGB"), "submissions_count": 1}
    elif module_type in ("course", "chapter", "sequential"):
        state = {"position": rng.randint(1, 8)}
    else:
        state = {}
    if text is not None:
        # Half of the awkward texts are stored with raw non-ASCII characters, half \u-escaped.
        return json.dumps(state, ensure_ascii=row_id % 2 == 0), grade, max_grade
    return json.dumps(state), grade, max_grade


def _long_text(rng: random.Random, length: int) -> str:
    """Deterministic prose of about `length` characters sprinkled with awkward words."""
    words: list[str] = []
    size = 0
    while size < length:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:length]


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split total into integers proportional to weights (largest remainder method)."""
    weight_sum = sum(weights)
    if not total or weight_sum <= 0:
        return [0] * len(weights)
    exact = [total * w / weight_sum for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _ascii(text: str) -> str:
    """Letters of text with accents stripped; non-Latin letters dropped."""
    decomposed = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in decomposed if ch.isalnum())


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m panorama_elt.synthetic.openedx_mysql",
        description="Create and fill a synthetic Open edX edxapp database.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    parser.add_argument(
        "--password",
        default=os.environ.get("PANORAMA_MYSQL_PASSWORD", ""),
        help="default: $PANORAMA_MYSQL_PASSWORD",
    )
    parser.add_argument("--database", default="edxapp")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--courses", type=int, default=20)
    parser.add_argument("--studentmodule-rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--reference-time",
        type=datetime.fromisoformat,
        help="'YYYY-MM-DD HH:MM:SS' used as now (default: the server's NOW())",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: create the database if needed, then schema and data."""
    args = _parse_args(argv)
    started = time.monotonic()
    conn = pymysql.connect(
        host=args.host, port=args.port, user=args.user, password=args.password, charset="utf8mb4"
    )
    try:
        quoted = "`" + args.database.replace("`", "``") + "`"
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS {quoted} "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        conn.select_db(args.database)
        create_schema(conn)
        counts = generate(
            conn,
            users=args.users,
            courses=args.courses,
            studentmodule_rows=args.studentmodule_rows,
            seed=args.seed,
            reference_time=args.reference_time,
        )
    finally:
        conn.close()
    summary = ", ".join(f"{table}={count}" for table, count in counts.items())
    print(f"{args.database}: {summary} ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
