"""The Ed-Fi emulator and datasource checked against clients nobody on this team wrote.

``lightbeam`` (PyPI; run as its own program) loads the synthetic dataset into the emulator and
counts it; ``edfi-api-client`` (PyPI) reads it back, and its result sets must equal what our
datasource pulled into the lake.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from edfi_api_client import EdFiClient

from panorama_elt.synthetic import edfi_data
from panorama_elt.synthetic.edfi_api import EdfiEmulator
from tests.test_edfi import current, load, setup, view

LIGHTBEAM = str(Path(sys.executable).parent / "lightbeam")
SERVER_KEYS = ("id", "_etag", "_lastModifiedDate")


def lightbeam(tmp_path: Path, api: EdfiEmulator, command: str, *args: str) -> str:
    """Run ``lightbeam <command>`` against the emulator; its output (it must succeed)."""
    config = tmp_path / "lightbeam.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": f"{tmp_path / 'jsonl'}/",
                "namespace": "ed-fi",
                "edfi_api": {
                    "base_url": api.url,
                    "version": 3,
                    "mode": "shared_instance",
                    "client_id": api.client_id,
                    "client_secret": api.client_secret,
                },
                "connection": {
                    "pool_size": 2,
                    "timeout": 30,
                    "num_retries": 2,
                    "backoff_factor": 0,
                    "retry_statuses": [500, 503],
                    "verify_ssl": False,
                },
            }
        )
    )
    result = subprocess.run(
        [LIGHTBEAM, command, "-c", str(config), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_lightbeam_send_then_count_and_our_pull(tmp_path: Path) -> None:
    dataset = edfi_data.generate()
    folder = tmp_path / "jsonl"
    folder.mkdir()
    for resource, bodies in dataset.items():
        lines = "".join(json.dumps(body, ensure_ascii=False) + "\n" for body in bodies)
        (folder / f"{resource}.jsonl").write_text(lines, encoding="utf-8")
    with EdfiEmulator(version="6.1") as api:
        lightbeam(tmp_path, api, "send")
        for resource, bodies in dataset.items():
            stored = [
                {k: v for k, v in i.items() if k not in SERVER_KEYS} for i in api.items(resource)
            ]
            assert sorted(map(_canonical, stored)) == sorted(map(_canonical, bodies)), resource

        # Sent again: every POST is an upsert of the same identity, nothing is added.
        lightbeam(tmp_path, api, "send", "--force")
        assert {r: len(api.items(r)) for r in dataset} == {r: len(b) for r, b in dataset.items()}

        counts = tmp_path / "counts.tsv"
        lightbeam(tmp_path, api, "count", "--results-file", str(counts))
        lines = counts.read_text().splitlines()
        assert lines[0] == "Records\tEndpoint"
        assert dict(line.split("\t")[::-1] for line in lines[1:]) == {
            r: str(len(b)) for r, b in dataset.items()
        }

        settings = setup(tmp_path, api, ["students", "studentSectionAttendanceEvents"])
        load(settings, tmp_path)
        for resource, table in [
            ("students", "students"),
            ("studentSectionAttendanceEvents", "student_section_attendance_events"),
        ]:
            assert current(tmp_path, table) == {i["id"]: i for i in api.items(resource)}


@pytest.mark.parametrize(
    "shape",
    [
        {"version": "6.1", "mode": "year_specific", "year": 2024},
        {"version": "7.3", "mode": "shared_instance"},  # the client pages by cursor here
    ],
)
def test_edfi_api_client_reads_what_we_pulled(tmp_path: Path, shape: dict[str, Any]) -> None:
    with EdfiEmulator(**shape) as api:
        api.load()
        settings_shape = {k: v for k, v in shape.items() if k != "version"}
        settings = setup(tmp_path, api, ["studentSchoolAssociations"], **settings_shape)
        load(settings, tmp_path)
        victim = api.items("studentSchoolAssociations")[3]
        api.delete("ed-fi", "studentSchoolAssociations", victim["id"])
        load(settings, tmp_path)

        client = EdFiClient(
            api.url,
            api.client_id,
            api.client_secret,
            api_mode=shape["mode"],
            api_year=shape.get("year"),
        )
        newest = client.get_newest_change_version()
        window = {"minChangeVersion": 0, "maxChangeVersion": newest}
        theirs = client.resource("studentSchoolAssociations").get_rows(
            params=window, page_size=9, step_change_version=True, change_version_step_size=40
        )
        ours = current(tmp_path, "student_school_associations")
        assert {_canonical(r) for r in theirs} == {_canonical(r) for r in ours.values()}
        deletes = client.resource("studentSchoolAssociations", get_deletes=True).get_rows(
            params=window, page_size=9, step_change_version=True
        )
        our_deletes = {
            r[0] for r in view(tmp_path, "edfi_table_student_school_associations_deletes", "id")
        }
        assert {d["id"] for d in deletes} == our_deletes == {victim["id"]}


def test_5_3_deletes_have_no_total_count(tmp_path: Path) -> None:
    """5.3's /deletes sends no Total-Count: edfi-api-client's reverse paging cannot read it,
    ours pages deletes forward (they only grow past the window) and gets them."""
    with EdfiEmulator(version="5.3") as api:
        api.load()
        settings = setup(tmp_path, api, ["students"])
        load(settings, tmp_path)
        victim = api.items("students")[0]
        api.delete("ed-fi", "students", victim["id"])
        load(settings, tmp_path)
        assert victim["id"] not in current(tmp_path, "students")
        client = EdFiClient(api.url, api.client_id, api.client_secret, api_mode="shared_instance")
        window = {"minChangeVersion": 0, "maxChangeVersion": client.get_newest_change_version()}
        rows = client.resource("students", get_deletes=True).get_rows(
            params=window, step_change_version=True
        )
        with pytest.raises(TypeError):
            list(rows)


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)
