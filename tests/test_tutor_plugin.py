"""The Tutor plugin, rendered by the real `tutor` from PyPI in a temporary TUTOR_ROOT.

What an operator does (copy the file into the plugins root, enable it, save the config), then
what Kubernetes and docker compose would read: a CronJob running extract-and-load with a
settings file panorama-elt accepts, a Secret with the passwords, a job service for
`tutor local`. The plugin's MySQL init task runs against the private MariaDB.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pymysql
import pytest
import yaml

from panorama_elt.settings import Settings, parse_settings
from tests.conftest import ROOT, TEMPLATE, connect, local_datalake

PLUGIN = ROOT / "packaging" / "tutor" / "panorama_elt.py"
TUTOR = Path(sys.executable).parent / "tutor"
SETTINGS = {
    "PANORAMA_ELT_BUCKET": "lake-bucket",
    "LMS_HOST": "learn.example.org",
    "PANORAMA_ELT_SCHEDULE": "15 * * * *",
    "PANORAMA_ELT_MEMORY_LIMIT": "3Gi",
    "PANORAMA_ELT_DOCKER_IMAGE": "registry.example.org/panorama-elt:1.2",
}


# Tutor's own start-up (as its CLI does it), then each init task of the plugin, rendered.
RENDER_INIT_TASKS = """
import sys
from tutor import config, env, hooks
hooks.Actions.CORE_READY.do()
hooks.Actions.PROJECT_ROOT_READY.do(sys.argv[1])
cfg = config.load(sys.argv[1])
context = hooks.Contexts.app("panorama_elt").name
for service, task in hooks.Filters.CLI_DO_INIT_TASKS.iterate_from_context(context):
    print(service + "\\n" + env.render_str(cfg, task) + "\\0")
"""


def tutor_environment(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TUTOR_ROOT": str(root),
        "TUTOR_PLUGINS_ROOT": str(root / "plugins"),
        "TUTOR_IGNORE_ENTRYPOINT_PLUGINS": "1",  # only this plugin, whatever else is installed
    }


def tutor(root: Path, *args: str) -> str:
    """Run the tutor CLI on ``root``; its output (a failure fails the test)."""
    env = tutor_environment(root)
    result = subprocess.run([str(TUTOR), *args], env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"tutor {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def save(root: Path, values: dict[str, str]) -> None:
    """Install and enable the plugin in ``root``, then save the config with ``values``."""
    (root / "plugins").mkdir(parents=True)
    shutil.copy(PLUGIN, root / "plugins" / "panorama_elt.py")
    tutor(root, "plugins", "enable", "panorama_elt")
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    tutor(root, "config", "save", *sets)


@pytest.fixture(scope="module")
def tutor_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tutor")
    save(root, SETTINGS)
    return root


def saved_password(root: Path) -> str:
    """The read-only user's password Tutor generated and keeps in config.yml."""
    return str(yaml.safe_load((root / "config.yml").read_text())["PANORAMA_ELT_MYSQL_PASSWORD"])


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def load_rendered(text: str, env: dict[str, str], folder: Path) -> Settings:
    """The rendered settings as panorama-elt reads them, with the Secret's values in the env."""
    path = folder / "panorama_settings.yaml"
    path.write_text(text)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return parse_settings(yaml.safe_load(text), path)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value


def assert_tutor_settings(settings: Settings, mysql_password: str) -> None:
    lake = settings.datalake
    assert (lake.type, lake.bucket, lake.base_prefix) == ("aws", "lake-bucket", "openedx")
    assert [(p.name, p.value) for p in lake.base_partitions] == [("lms", "learn.example.org")]
    structures, mysql = settings.datasources
    for source in (structures, mysql):
        assert source.mysql is not None
        assert (source.mysql.host, source.mysql.port, source.mysql.database) == (
            "mysql",
            3306,
            "openedx",
        )
        assert (source.mysql.username, source.mysql.password) == ("panorama", mysql_password)
    assert structures.mongodb is not None
    assert (structures.mongodb.host, structures.mongodb.database) == ("mongodb", "openedx")
    assert structures.mongodb.auth_source == "admin"
    template = yaml.safe_load(TEMPLATE.read_text())
    for source in settings.datasources:
        (expected,) = [d["tables"] for d in template["datasources"] if d["type"] == source.type]
        assert [t.name for t in source.tables] == [t["name"] for t in expected]
        assert [[f.name for f in t.fields] for t in source.tables] == [
            [f["name"] for f in t["fields"]] for t in expected
        ]


def test_k8s_cronjob_runs_extract_and_load_with_the_settings_given(
    tutor_root: Path, tmp_path: Path
) -> None:
    docs = documents(tutor_root / "env" / "k8s" / "deployments.yml")
    cronjob = by_kind(docs, "CronJob", "panorama-elt")
    assert cronjob["apiVersion"] == "batch/v1"
    spec = cronjob["spec"]
    assert spec["schedule"] == "15 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.org/panorama-elt:1.2"
    command = container["command"]
    assert command[-2:] == ["extract-and-load", "--all"]
    settings_path = Path(command[command.index("--settings") + 1])
    assert container["resources"]["requests"]["memory"] == "512Mi"
    assert container["resources"]["limits"]["memory"] == "3Gi"
    # The settings file is the ConfigMap's, mounted where the command reads it.
    (mount,) = [
        m for m in container["volumeMounts"] if Path(m["mountPath"]) == settings_path.parent
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = by_kind(docs, "ConfigMap", volume["configMap"]["name"])
    text = config_map["data"][settings_path.name]
    # The passwords come from the Secret, not the ConfigMap.
    (source,) = container["envFrom"]
    secret = by_kind(docs, "Secret", source["secretRef"]["name"])["stringData"]
    password = saved_password(tutor_root)
    assert len(password) >= 16 and password not in text
    assert secret["PANORAMA_MYSQL_PASSWORD"] == password
    assert_tutor_settings(load_rendered(text, secret, tmp_path), password)
    # The CronJob is started by `tutor k8s start`, which skips the job component.
    assert cronjob["metadata"]["labels"]["app.kubernetes.io/component"] != "job"
    # `tutor k8s do panorama-elt` finds its Job by name: the same container, with
    # `command: []` so that Tutor's `sh -e -c <script>` replaces it rather than follows it.
    job = by_kind(documents(tutor_root / "env" / "k8s" / "jobs.yml"), "Job", "panorama-elt-job")
    (job_container,) = job["spec"]["template"]["spec"]["containers"]
    assert job_container == {**container, "command": []}


def test_local_job_service_carries_the_same_settings(tutor_root: Path, tmp_path: Path) -> None:
    compose = yaml.safe_load((tutor_root / "env" / "local" / "docker-compose.jobs.yml").read_text())
    service = compose["services"]["panorama-elt-job"]
    assert service["image"] == "registry.example.org/panorama-elt:1.2"
    # docker compose turns $$ back into $ (and would replace a lone ${...} itself).
    env = {k: str(v).replace("$$", "$") for k, v in service["environment"].items()}
    assert "panorama-elt" in tutor(tutor_root, "local", "do", "--help")
    text = env.pop("PANORAMA_ELT_SETTINGS")
    password = saved_password(tutor_root)
    assert_tutor_settings(load_rendered(text, env, tmp_path), password)


def test_plugin_tables_are_the_templates() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_tutor_plugin
    finally:
        sys.path.pop(0)
    plugin = PLUGIN.read_text()
    assert sync_tutor_plugin.synced(plugin, TEMPLATE.read_text()) == plugin, (
        "the Tutor plugin's tables differ from the template's: run "
        "venv/bin/python scripts/sync_tutor_plugin.py"
    )


@pytest.fixture
def readonly_user(mysql_server: dict[str, Any]) -> Iterator[str]:
    name = f"ro_{os.getpid()}"
    yield name
    with connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")


@pytest.mark.mariadb
def test_init_task_creates_a_read_only_user(
    tmp_path: Path, mysql_server: dict[str, Any], scratch_db: str, readonly_user: str
) -> None:
    root = tmp_path / "tutor"
    save(
        root,
        {
            "MYSQL_HOST": mysql_server["host"],
            "MYSQL_PORT": str(mysql_server["port"]),
            "MYSQL_ROOT_USERNAME": mysql_server["user"],
            "MYSQL_ROOT_PASSWORD": mysql_server["password"],
            "OPENEDX_MYSQL_DATABASE": scratch_db,
            "PANORAMA_ELT_MYSQL_USERNAME": readonly_user,
        },
    )
    # What `tutor local do init --limit=panorama_elt` would run: the plugin's init tasks,
    # rendered with this config by Tutor itself (here without Docker: on this host).
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER_INIT_TASKS, str(root)],
        env=tutor_environment(root),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tasks = [t.split("\n", 1) for t in rendered.split("\0\n") if t.strip()]
    assert [service for service, _ in tasks] == ["mysql"]
    for _ in range(2):  # twice: `do init` runs again at each upgrade
        run = subprocess.run(["sh", "-e", "-c", tasks[0][1]], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    with connect(mysql_server, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE auth_user (id int PRIMARY KEY)")
        cur.execute("INSERT INTO auth_user VALUES (7)")
    password = saved_password(root)
    reader = {**mysql_server, "user": readonly_user, "password": password}
    with connect(reader, scratch_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM auth_user")
        assert cur.fetchall() == ((7,),)
        with pytest.raises(pymysql.err.OperationalError) as denied:
            cur.execute("INSERT INTO auth_user VALUES (8)")
        assert denied.value.args[0] == 1142  # INSERT command denied


def test_plain_kubernetes_cronjob_has_the_plugins_pod(tutor_root: Path) -> None:
    """packaging/kubernetes/cronjob.yaml: the Tutor CronJob's pod, with its own defaults."""
    (plain,) = documents(ROOT / "packaging" / "kubernetes" / "cronjob.yaml")
    tutor_cronjob = by_kind(
        documents(tutor_root / "env" / "k8s" / "deployments.yml"), "CronJob", "panorama-elt"
    )
    assert plain["apiVersion"] == "batch/v1" and plain["kind"] == "CronJob"
    assert plain["spec"]["schedule"] == "55 * * * *"
    assert plain["spec"]["concurrencyPolicy"] == "Forbid"
    pod = plain["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    expected = tutor_cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (tutor_container,) = expected["containers"]
    assert container["resources"]["limits"]["memory"] == "2Gi"
    different = {"image", "resources"}  # set in SETTINGS for the Tutor test
    assert {k: v for k, v in container.items() if k not in different} == {
        k: v for k, v in tutor_container.items() if k not in different
    }
    assert {k: v for k, v in pod.items() if k != "containers"} == {
        k: v for k, v in expected.items() if k != "containers"
    }


def load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("panorama_elt_tutor_plugin", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_do_command_runs_panorama_with_the_settings_of_its_environment(tmp_path: Path) -> None:
    """`tutor local do panorama-elt create-datalake-tables --all`, minus Docker: its script."""
    command = load_plugin().panorama_elt_run
    ((service, script),) = command.callback(("create-datalake-tables", "--all"))
    assert service == "panorama-elt"  # run in the panorama-elt-job service / Job
    ((_, default),) = command.callback(())
    assert default.strip().endswith("python panorama.py extract-and-load --all")
    settings = {
        "datalake": local_datalake(tmp_path / "lake"),
        "datasources": [
            {
                "type": "mysql",
                "name": "db",
                "mysql_password": "${PANORAMA_MYSQL_PASSWORD}",
                "tables": [{"name": "t", "fields": [{"name": "id", "type": "int"}]}],
            }
        ],
    }
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "PANORAMA_ELT_SETTINGS": yaml.safe_dump(settings),
        "PANORAMA_MYSQL_PASSWORD": "from-the-secret",
    }
    run = subprocess.run(
        ["sh", "-e", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    db = duckdb.connect(str(tmp_path / "lake" / "panorama.duckdb"), read_only=True)
    try:
        tables = {r[0] for r in db.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        tables |= {r[0] for r in db.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    finally:
        db.close()
    assert "openedx_raw_t" in tables
