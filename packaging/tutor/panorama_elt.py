"""panorama-elt for Tutor (v18+): an hourly extract-and-load of the Open edX databases.

A single-file plugin (Tutor names it after this file: ``panorama_elt``)::

    cp panorama_elt.py "$(tutor plugins printroot)/"
    tutor plugins enable panorama_elt
    tutor config save --set PANORAMA_ELT_BUCKET=my-bucket --set PANORAMA_ELT_DOCKER_IMAGE=...
    tutor local do init --limit=panorama_elt     # or: tutor k8s do init --limit=panorama_elt

It adds:
- settings as Tutor config (``PANORAMA_ELT_*``), rendered into a panorama_settings.yaml whose
  hosts and databases are Tutor's own (``mysql``, ``mongodb``, ``openedx``, MongoDB users
  authenticated against ``admin``), with the Open edX tables of panorama-elt's template;
- an init task creating a read-only MySQL user (``SELECT`` on the Open edX database);
- ``tutor k8s``: a ConfigMap (the settings), a Secret (passwords and keys) and a CronJob
  (hourly, ``concurrencyPolicy: Forbid``, memory request and limit);
- ``tutor local`` / ``tutor k8s``: ``tutor <mode> do panorama-elt [COMMAND...]`` runs one
  panorama-elt command, by default ``extract-and-load --all`` (hourly on a ``tutor local``
  host from cron; see panorama-elt's README, "Open edX on Tutor").
"""

from __future__ import annotations

import shlex
import textwrap

import click
from tutor import hooks

# The image is built from panorama-elt's Dockerfile (`make docker-build`) and pushed to a
# registry the cluster can pull from.
hooks.Filters.CONFIG_DEFAULTS.add_items(
    [
        ("PANORAMA_ELT_DOCKER_IMAGE", "{{ DOCKER_REGISTRY }}panorama-elt:latest"),
        ("PANORAMA_ELT_SCHEDULE", "55 * * * *"),
        # The original's pods were killed out of memory: a request the scheduler reserves
        # and a limit well above what a streaming run needs.
        ("PANORAMA_ELT_MEMORY_REQUEST", "512Mi"),
        ("PANORAMA_ELT_MEMORY_LIMIT", "2Gi"),
        ("PANORAMA_ELT_CPU_REQUEST", "250m"),
        ("PANORAMA_ELT_DATALAKE_TYPE", "aws"),  # aws | local (local: tutor local only)
        ("PANORAMA_ELT_BUCKET", ""),
        ("PANORAMA_ELT_AWS_REGION", "us-east-1"),
        # Empty: the standard AWS credential chain (for instance an IAM role for the pod).
        ("PANORAMA_ELT_AWS_ACCESS_KEY", ""),
        ("PANORAMA_ELT_AWS_SECRET_ACCESS_KEY", ""),
        ("PANORAMA_ELT_BASE_PREFIX", "openedx"),
        ("PANORAMA_ELT_DATALAKE_DATABASE", "panorama"),
        ("PANORAMA_ELT_DATALAKE_WORKGROUP", "primary"),
        ("PANORAMA_ELT_LMS", "{{ LMS_HOST }}"),
        ("PANORAMA_ELT_MYSQL_USERNAME", "panorama"),
        # Tutor's MongoDB has no users by default; a read-only user of your own goes here.
        ("PANORAMA_ELT_MONGODB_USERNAME", "{{ MONGODB_USERNAME }}"),
        ("PANORAMA_ELT_MONGODB_PASSWORD", "{{ MONGODB_PASSWORD }}"),
    ]
)
hooks.Filters.CONFIG_UNIQUE.add_items([("PANORAMA_ELT_MYSQL_PASSWORD", "{{ 24|random_string }}")])

# A read-only MySQL user for the runs: `tutor local do init --limit=panorama_elt`.
MYSQL_INIT_TASK = """
mysql -u {{ MYSQL_ROOT_USERNAME }} --password="{{ MYSQL_ROOT_PASSWORD }}" --host "{{ MYSQL_HOST }}" --port {{ MYSQL_PORT }} -e "CREATE USER IF NOT EXISTS '{{ PANORAMA_ELT_MYSQL_USERNAME }}'@'%' IDENTIFIED BY '{{ PANORAMA_ELT_MYSQL_PASSWORD }}'; ALTER USER '{{ PANORAMA_ELT_MYSQL_USERNAME }}'@'%' IDENTIFIED BY '{{ PANORAMA_ELT_MYSQL_PASSWORD }}'; GRANT SELECT ON \\`{{ OPENEDX_MYSQL_DATABASE }}\\`.* TO '{{ PANORAMA_ELT_MYSQL_USERNAME }}'@'%';"
"""
hooks.Filters.CLI_DO_INIT_TASKS.add_item(("mysql", MYSQL_INIT_TASK))

# Secrets reach the settings file as ${ENV} values, from the Secret (k8s) or the job's
# environment (local): the ConfigMap holds no password.
SECRETS = {
    "PANORAMA_MYSQL_PASSWORD": "PANORAMA_ELT_MYSQL_PASSWORD",
    "PANORAMA_MONGODB_PASSWORD": "PANORAMA_ELT_MONGODB_PASSWORD",
    "PANORAMA_AWS_ACCESS_KEY": "PANORAMA_ELT_AWS_ACCESS_KEY",
    "PANORAMA_AWS_SECRET_ACCESS_KEY": "PANORAMA_ELT_AWS_SECRET_ACCESS_KEY",
}

# The Open edX tables, as in panorama-elt's panorama_settings.yaml.template (kept equal by
# its tests; `python scripts/sync_tutor_plugin.py` copies them again after a change there).
# --- tables: begin ---
TABLES = {
    "openedx_course_structures": """\
  tables:
  - name: course_structures
    # Opt in to one file per course, re-reading only courses published again since the
    # last run (run create-datalake-tables after changing it):
    # partitions: {partition_fields: [course_id]}
    fields:
    - {name: module_location, type: varchar}
    - {name: course_id, type: varchar}
    - {name: organization, type: varchar}
    - {name: course_code, type: varchar}
    - {name: course_edition, type: varchar}
    - {name: parent, type: varchar}
    - {name: block_type, type: varchar}
    - {name: block_id, type: varchar}
    - {name: display_name, type: varchar}
    - {name: course_name, type: varchar}
    - {name: chapter, type: varchar}
    - {name: sequential, type: varchar}
    - {name: vertical, type: varchar}
    - {name: library, type: varchar}
    - {name: component, type: varchar}
    - {name: weight, type: double}
    - {name: block_order, type: int}
    - {name: section_number, type: varchar}
    - {name: subsection_number, type: varchar}
    - {name: unit_number, type: varchar}
    - {name: graded, type: boolean}
    - {name: format, type: varchar}
    - {name: due, type: datetime}
    - {name: start, type: datetime}
    - {name: visible_to_staff_only, type: boolean}
    - {name: hide_from_toc, type: boolean}
    - {name: published_version, type: varchar}
    - {name: published_on, type: datetime}
""",
    "mysql": """\
  tables:
  - name: student_anonymoususerid
    fields:
    - {name: id, type: int(11)}
    - {name: anonymous_user_id, type: varchar(32)}
    - {name: course_id, type: varchar(255)}
    - {name: user_id, type: int(11)}
  - name: site_configuration_siteconfiguration
    fields:
    - {name: id, type: int(11)}
    - {name: site_id, type: int(11)}
    - {name: enabled, type: tinyint(1)}
    - {name: site_values, type: longtext}
  - name: auth_user
    fields:
    - {name: id, type: int(11)}
    # Django password hashes: never read, written as NULL (remove `value: null` to copy them).
    - {name: password, type: varchar(128), value: null}
    - {name: last_login, type: datetime(6)}
    - {name: is_superuser, type: tinyint(1)}
    - {name: username, type: varchar(150)}
    - {name: first_name, type: varchar(150)}
    - {name: last_name, type: varchar(150)}
    - {name: email, type: varchar(254)}
    - {name: is_staff, type: tinyint(1)}
    - {name: is_active, type: tinyint(1)}
    - {name: date_joined, type: datetime(6)}
  - name: student_courseenrollment
    fields:
    - {name: id, type: int(11)}
    - {name: course_id, type: varchar(255)}
    - {name: created, type: datetime(6)}
    - {name: is_active, type: tinyint(1)}
    - {name: mode, type: varchar(100)}
    - {name: user_id, type: int(11)}
  - name: auth_userprofile
    fields:
    - {name: id, type: int(11)}
    - {name: name, type: varchar(255)}
    - {name: meta, type: longtext}
    - {name: courseware, type: varchar(255)}
    - {name: language, type: varchar(255)}
    - {name: location, type: varchar(255)}
    - {name: year_of_birth, type: int(11)}
    - {name: gender, type: varchar(6)}
    - {name: level_of_education, type: varchar(6)}
    - {name: mailing_address, type: longtext}
    - {name: city, type: longtext}
    - {name: country, type: varchar(2)}
    - {name: goals, type: longtext}
    - {name: bio, type: varchar(3000)}
    - {name: profile_image_uploaded_at, type: datetime(6)}
    - {name: user_id, type: int(11)}
    - {name: phone_number, type: varchar(50)}
    - {name: state, type: varchar(2)}
  - name: student_courseaccessrole
    fields:
    - {name: id, type: int(11)}
    - {name: org, type: varchar(64)}
    - {name: course_id, type: varchar(255)}
    - {name: role, type: varchar(64)}
    - {name: user_id, type: int(11)}
  - name: course_overviews_courseoverview
    fields:
    - {name: created, type: datetime(6)}
    - {name: modified, type: datetime(6)}
    - {name: version, type: int(11)}
    - {name: id, type: varchar(255)}
    - {name: _location, type: varchar(255)}
    - {name: display_name, type: longtext}
    - {name: display_number_with_default, type: longtext}
    - {name: display_org_with_default, type: longtext}
    - {name: start, type: datetime(6)}
    - {name: end, type: datetime(6)}
    - {name: advertised_start, type: longtext}
    - {name: course_image_url, type: longtext}
    - {name: social_sharing_url, type: longtext}
    - {name: end_of_course_survey_url, type: longtext}
    - {name: certificates_display_behavior, type: longtext}
    - {name: certificates_show_before_end, type: tinyint(1)}
    - {name: cert_html_view_enabled, type: tinyint(1)}
    - {name: has_any_active_web_certificate, type: tinyint(1)}
    - {name: cert_name_short, type: longtext}
    - {name: cert_name_long, type: longtext}
    - {name: lowest_passing_grade, type: 'decimal(5,2)'}
    - {name: days_early_for_beta, type: double}
    - {name: mobile_available, type: tinyint(1)}
    - {name: visible_to_staff_only, type: tinyint(1)}
    - {name: _pre_requisite_courses_json, type: longtext}
    - {name: enrollment_start, type: datetime(6)}
    - {name: enrollment_end, type: datetime(6)}
    - {name: enrollment_domain, type: longtext}
    - {name: invitation_only, type: tinyint(1)}
    - {name: max_student_enrollments_allowed, type: int(11)}
    - {name: announcement, type: datetime(6)}
    - {name: catalog_visibility, type: longtext}
    - {name: course_video_url, type: longtext}
    - {name: effort, type: longtext}
    - {name: short_description, type: longtext}
    - {name: org, type: longtext}
    - {name: self_paced, type: tinyint(1)}
    - {name: marketing_url, type: longtext}
    - {name: eligible_for_financial_aid, type: tinyint(1)}
    - {name: language, type: longtext}
    - {name: certificate_available_date, type: datetime(6)}
    - {name: end_date, type: datetime(6)}
    - {name: start_date, type: datetime(6)}
    - {name: banner_image_url, type: longtext}
    - {name: has_highlights, type: tinyint(1)}
    - {name: allow_proctoring_opt_out, type: tinyint(1)}
    - {name: enable_proctored_exams, type: tinyint(1)}
    - {name: proctoring_escalation_email, type: longtext}
    - {name: proctoring_provider, type: longtext}
    - {name: entrance_exam_enabled, type: tinyint(1)}
    - {name: entrance_exam_id, type: varchar(255)}
    - {name: entrance_exam_minimum_score_pct, type: double}
    - {name: external_id, type: varchar(128)}
    - {name: force_on_flexible_peer_openassessments, type: tinyint(1)}
  - name: courseware_studentmodule
    partitions:
      partition_fields: [course_id]
      timestamp_field: modified
      interval: 2 hour
    fields:
    - {name: id, type: bigint(20) unsigned}
    - {name: module_type, type: varchar(32)}
    - {name: module_id, type: varchar(255)}
    - {name: course_id, type: varchar(255)}
    - {name: state, type: longtext}
    - {name: grade, type: double}
    - {name: max_grade, type: double}
    - {name: done, type: varchar(8)}
    - {name: created, type: datetime(6)}
    - {name: modified, type: datetime(6)}
    - {name: student_id, type: int(11)}
  - name: grades_persistentcoursegrade
    fields:
    - {name: created, type: datetime(6)}
    - {name: modified, type: datetime(6)}
    - {name: id, type: bigint(20) unsigned}
    - {name: user_id, type: int(11)}
    - {name: course_id, type: varchar(255)}
    - {name: course_edited_timestamp, type: datetime(6)}
    - {name: course_version, type: varchar(255)}
    - {name: grading_policy_hash, type: varchar(255)}
    - {name: percent_grade, type: double}
    - {name: letter_grade, type: varchar(255)}
    - {name: passed_timestamp, type: datetime(6)}
  - name: student_manualenrollmentaudit
    fields:
    - {name: id, type: int(11)}
    - {name: enrolled_email, type: varchar(255)}
    - {name: time_stamp, type: datetime(6)}
    - {name: state_transition, type: varchar(255)}
    - {name: reason, type: longtext}
    - {name: enrolled_by_id, type: int(11)}
    - {name: enrollment_id, type: int(11)}
    - {name: role, type: varchar(64)}
  - name: student_courseenrollmentallowed
    fields:
    - {name: id, type: int(11)}
    - {name: email, type: varchar(255)}
    - {name: course_id, type: varchar(255)}
    - {name: auto_enroll, type: tinyint(1)}
    - {name: created, type: datetime(6)}
    - {name: user_id, type: int(11)}
  - name: certificates_generatedcertificate
    fields:
    - {name: id, type: int(11)}
    - {name: course_id, type: varchar(255)}
    - {name: verify_uuid, type: varchar(32)}
    - {name: download_uuid, type: varchar(32)}
    - {name: download_url, type: varchar(128)}
    - {name: grade, type: varchar(5)}
    - {name: key, type: varchar(32)}
    - {name: distinction, type: tinyint(1)}
    - {name: status, type: varchar(32)}
    - {name: mode, type: varchar(32)}
    - {name: name, type: varchar(255)}
    - {name: created_date, type: datetime(6)}
    - {name: modified_date, type: datetime(6)}
    - {name: error_reason, type: varchar(512)}
    - {name: user_id, type: int(11)}
  - name: course_groups_cohortmembership
    fields:
    - {name: id, type: int(11)}
    - {name: course_id, type: varchar(255)}
    - {name: course_user_group_id, type: int(11)}
    - {name: user_id, type: int(11)}
  - name: course_groups_coursecohort
    fields:
    - {name: id, type: int(11)}
    - {name: assignment_type, type: varchar(20)}
    - {name: course_user_group_id, type: int(11)}
  - name: course_groups_coursecohortssettings
    fields:
    - {name: id, type: int(11)}
    - {name: is_cohorted, type: tinyint(1)}
    - {name: course_id, type: varchar(255)}
    - {name: cohorted_discussions, type: longtext}
    - {name: always_cohort_inline_discussions, type: tinyint(1)}
  - name: course_groups_courseusergroup
    fields:
    - {name: id, type: int(11)}
    - {name: name, type: varchar(255)}
    - {name: course_id, type: varchar(255)}
    - {name: group_type, type: varchar(20)}
  - name: course_groups_courseusergroup_users
    fields:
    - {name: id, type: int(11)}
    - {name: courseusergroup_id, type: int(11)}
    - {name: user_id, type: int(11)}
  - name: course_groups_courseusergrouppartitiongroup
    fields:
    - {name: id, type: int(11)}
    - {name: partition_id, type: int(11)}
    - {name: group_id, type: int(11)}
    - {name: created_at, type: datetime(6)}
    - {name: updated_at, type: datetime(6)}
    - {name: course_user_group_id, type: int(11)}
  - name: course_groups_unregisteredlearnercohortassignments
    fields:
    - {name: id, type: int(11)}
    - {name: email, type: varchar(255)}
    - {name: course_id, type: varchar(255)}
    - {name: course_user_group_id, type: int(11)}
""",
}
# --- tables: end ---


def _verbatim(text: str) -> str:
    """``text`` kept from Jinja rendering (its lines may hold braces)."""
    return "{% raw %}" + text.rstrip("\n") + "{% endraw %}\n"


_CONNECTION_MYSQL = """\
  mysql_host: {{ MYSQL_HOST|tojson }}
  mysql_port: {{ MYSQL_PORT }}
  mysql_username: {{ PANORAMA_ELT_MYSQL_USERNAME|tojson }}
  mysql_password: ${PANORAMA_MYSQL_PASSWORD}
  mysql_database: {{ OPENEDX_MYSQL_DATABASE|tojson }}
"""

SETTINGS = (
    """\
# panorama-elt settings rendered by the Tutor plugin panorama_elt: change them with
# `tutor config save --set PANORAMA_ELT_...=...`, not here.
datalake:
{%- if PANORAMA_ELT_DATALAKE_TYPE == "local" %}
  type: local
  path: /data/datalake
{%- else %}
  type: aws
  panorama_raw_data_bucket: {{ PANORAMA_ELT_BUCKET|tojson }}
  aws_region: {{ PANORAMA_ELT_AWS_REGION|tojson }}
  aws_access_key: ${PANORAMA_AWS_ACCESS_KEY}
  aws_secret_access_key: ${PANORAMA_AWS_SECRET_ACCESS_KEY}
  datalake_workgroup: {{ PANORAMA_ELT_DATALAKE_WORKGROUP|tojson }}
{%- endif %}
  base_prefix: {{ PANORAMA_ELT_BASE_PREFIX|tojson }}
  datalake_database: {{ PANORAMA_ELT_DATALAKE_DATABASE|tojson }}
  base_partitions:
  - {name: lms, type: varchar, value: {{ PANORAMA_ELT_LMS|tojson }}}
datasources:
- type: openedx_course_structures
  name: openedx_course_structures
  mongodb_host: {{ MONGODB_HOST|tojson }}
  mongodb_port: {{ MONGODB_PORT }}
  mongodb_username: {{ PANORAMA_ELT_MONGODB_USERNAME|tojson }}
  mongodb_password: ${PANORAMA_MONGODB_PASSWORD}
  mongodb_database: {{ MONGODB_DATABASE|tojson }}
  mongodb_auth_source: {{ MONGODB_AUTH_SOURCE|tojson }}
  mongodb_tls: {{ MONGODB_USE_SSL|tojson }}
"""
    + _CONNECTION_MYSQL
    + _verbatim(TABLES["openedx_course_structures"])
    + """\
- type: mysql
  name: openedx_mysql
"""
    + _CONNECTION_MYSQL
    + """\
  mysql_time_zone: '+00:00'
"""
    + _verbatim(TABLES["mysql"])
)

_LABELS = """\
  labels:
    app.kubernetes.io/name: panorama-elt
"""

# One pod spec for the CronJob and for `tutor k8s do panorama-elt` (whose Job has
# `command: []`: Tutor then runs its own `sh -e -c <script>` in it).
_POD = """\
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
      containers:
      - name: panorama-elt
        image: {{ PANORAMA_ELT_DOCKER_IMAGE }}
        command: COMMAND
        envFrom:
        - secretRef:
            name: panorama-elt-secrets
        resources:
          requests:
            memory: {{ PANORAMA_ELT_MEMORY_REQUEST|tojson }}
            cpu: {{ PANORAMA_ELT_CPU_REQUEST|tojson }}
          limits:
            memory: {{ PANORAMA_ELT_MEMORY_LIMIT|tojson }}
        volumeMounts:
        - name: settings
          mountPath: /config
          readOnly: true
      volumes:
      - name: settings
        configMap:
          name: panorama-elt-settings
"""

RUN_COMMAND = (
    '["python", "panorama.py", "--settings", "/config/panorama_settings.yaml", '
    '"extract-and-load", "--all"]'
)


def _pod(command: str) -> str:
    """The pod spec (indented for a Job template) running ``command``."""
    return _POD.replace("COMMAND", command)


K8S_RESOURCES = (
    """\
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: panorama-elt-settings
"""
    + _LABELS
    + """\
data:
  panorama_settings.yaml: |
"""
    + textwrap.indent(SETTINGS, "    ")
    + """\
---
apiVersion: v1
kind: Secret
metadata:
  name: panorama-elt-secrets
"""
    + _LABELS
    + "type: Opaque\nstringData:\n"
    + "".join(f"  {env}: {{{{ {key}|tojson }}}}\n" for env, key in SECRETS.items())
    + """\
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: panorama-elt
  labels:
    app.kubernetes.io/name: panorama-elt
    app.kubernetes.io/component: cronjob
spec:
  schedule: {{ PANORAMA_ELT_SCHEDULE|tojson }}
  # A run still going when the next is due: the next one is skipped, never run beside it.
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 600
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 3
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        metadata:
          labels:
            app.kubernetes.io/name: panorama-elt
        spec:
"""
    + textwrap.indent(_pod(RUN_COMMAND), "    ")
)

# `tutor k8s do panorama-elt` runs its command in this Job (Tutor finds it by name).
K8S_JOB = """\
---
apiVersion: batch/v1
kind: Job
metadata:
  name: panorama-elt-job
  labels:
    app.kubernetes.io/component: job
    app.kubernetes.io/name: panorama-elt
spec:
  backoffLimit: 0
  template:
    spec:
""" + _pod("[]")

# `tutor local do panorama-elt` runs in this service; the settings come in its environment.
# Compose would replace ${...} itself: $$ keeps a $ for panorama-elt.
LOCAL_JOB_SERVICE = (
    """\
panorama-elt-job:
  image: {{ PANORAMA_ELT_DOCKER_IMAGE }}
  environment:
    PANORAMA_ELT_SETTINGS: |
"""
    + textwrap.indent(SETTINGS.replace("${", "$${"), "      ")
    + "".join(
        f"    {env}: {{{{ {key}|replace('$', '$$')|tojson }}}}\n" for env, key in SECRETS.items()
    )
    + """\
  volumes:
    - ../../data/panorama-elt:/data
  depends_on: {{ [("mysql", RUN_MYSQL), ("mongodb", RUN_MONGODB)]|list_if }}
"""
)

hooks.Filters.ENV_PATCHES.add_items(
    [
        ("k8s-deployments", K8S_RESOURCES),
        ("k8s-jobs", K8S_JOB),
        ("local-docker-compose-jobs-services", LOCAL_JOB_SERVICE),
    ]
)


# `tutor local do` passes the settings in the environment: written to a file first (k8s
# mounts the ConfigMap at the image's default settings path instead).
_RUN_SCRIPT = """
if [ -n "${PANORAMA_ELT_SETTINGS:-}" ]; then
  export PANORAMA_SETTINGS="${TMPDIR:-/tmp}/panorama_settings.yaml"
  printf '%s\\n' "$PANORAMA_ELT_SETTINGS" > "$PANORAMA_SETTINGS"
fi
python panorama.py COMMAND
"""


def run_script(args: tuple[str, ...]) -> str:
    """The job's shell script: panorama.py with ``args`` (default: extract-and-load --all)."""
    command = " ".join(shlex.quote(a) for a in args or ("extract-and-load", "--all"))
    return _RUN_SCRIPT.replace("COMMAND", command)


@click.command(
    "panorama-elt",
    help="Run a panorama-elt command (default: extract-and-load --all), "
    "e.g. `panorama-elt create-datalake-tables --all`",
    context_settings={"ignore_unknown_options": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def panorama_elt_run(args: tuple[str, ...]) -> list[tuple[str, str]]:
    return [("panorama-elt", run_script(args))]


hooks.Filters.CLI_DO_COMMANDS.add_item(panorama_elt_run)
