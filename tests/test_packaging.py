"""Packaging: the wheel's metadata, the Dockerfile's contract, .dockerignore, the systemd units."""

from __future__ import annotations

import configparser
import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import click

from panorama_elt.__about__ import __version__

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_wheel_has_the_console_script_the_pins_and_every_subpackage(tmp_path: Path) -> None:
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the clone.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "panorama_elt", src / "panorama_elt", ignore=shutil.ignore_patterns("__pycache__")
    )
    # With the build backend pinned in requirements-dev.txt: an isolated build would fetch
    # setuptools from the index, and the test would need the network.
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            *("--no-index", "-w", str(tmp_path), str(src)),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("panorama_elt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"panorama_elt-{__version__}.dist-info"
        metadata = HeaderParser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(f"{info}/entry_points.txt").decode())

    assert metadata["Version"] == __version__
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata.get_all("Requires-Dist") == _pins()
    assert entry_points["console_scripts"]["panorama"] == "panorama_elt.cli:main"
    packages = {
        str(init.parent.relative_to(ROOT))
        for init in (ROOT / "panorama_elt").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert packages <= {name.rsplit("/", 1)[0] for name in names}
    # Data the package reads at run time: the analytics views' SQL and the country codes.
    data = {
        str(p.relative_to(ROOT))
        for p in [*ROOT.glob("panorama_elt/analytics_sql/*.sql"), *ROOT.glob("panorama_elt/data/*")]
    }
    assert data and data <= set(names)


def test_entry_point_is_the_cli_group() -> None:
    from panorama_elt.cli import main

    assert isinstance(main, click.Group)
    assert "test-connections" in main.commands


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            pairs.append((instruction.upper(), args.strip()))
    return pairs


def test_dockerfile_contract() -> None:
    steps = _dockerfile()
    instructions = [i for i, _ in steps]
    args = dict(a.split("=", 1) for i, a in steps if i == "ARG" and "=" in a)
    assert args["BASE_IMAGE"] == "python:3.11-slim"
    assert ("FROM", "${BASE_IMAGE}") in steps
    # Dependencies in their own layer, before the code.
    copies = [a for i, a in steps if i == "COPY"]
    assert copies[0].startswith("requirements.txt ")
    assert instructions.index("RUN") > instructions.index("COPY")
    assert any("panorama_elt" in c for c in copies[1:])
    assert "PANORAMA_SETTINGS=/config/panorama_settings.yaml" in " ".join(
        a for i, a in steps if i == "ENV"
    )
    (user,) = [a for i, a in steps if i == "USER"]
    resolved = user.replace("${UID}", args["UID"])
    assert resolved.split(":")[0] not in ("root", "0", "")
    assert ("VOLUME", '["/config"]') in steps
    assert [a for i, a in steps if i == "CMD"] == ['["python", "panorama.py", "--help"]']


def test_dockerignore_keeps_secrets_out_and_the_needed_files_in() -> None:
    patterns = [
        p.strip().rstrip("/")
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in patterns)

    for secret in ("panorama_settings.yaml", "panorama_settings.yaml.bak", "x.duckdb", ".git"):
        assert ignored(secret), secret
    for folder in ("venv", "build", "datalake"):
        assert ignored(f"{folder}/x"), folder
    for needed in ("requirements.txt", "panorama.py", "panorama_settings.yaml.template"):
        assert not ignored(needed), needed
    assert not ignored("panorama_elt/cli.py")


def test_systemd_units() -> None:
    def unit(name: str) -> configparser.ConfigParser:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(ROOT / "packaging" / "systemd" / name)
        return parser

    timer = unit("panorama-elt.timer")
    assert timer["Timer"]["OnCalendar"] == "hourly"
    assert timer["Timer"]["Persistent"] == "true"
    service = unit("panorama-elt.service")["Service"]
    assert service["User"] not in ("", "root")
    assert service["WorkingDirectory"].startswith("/")
    executable, *arguments = service["ExecStart"].split()
    assert executable.startswith("/") and arguments[0].startswith("/")
    assert "extract-and-load" in arguments
