#!/usr/bin/env python3
"""Launcher: `python panorama.py COMMAND`; re-runs itself with venv/bin/python when present."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_PYTHON = HERE / "venv" / "bin" / "python"

if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (HERE / "venv").resolve():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

sys.path.insert(0, str(HERE))
from panorama_elt.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
