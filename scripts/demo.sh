#!/usr/bin/env bash
# make demo: private MariaDB -> synthetic Open edX data -> local datalake -> report from the views.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/mariadb.sh start
exec venv/bin/python scripts/demo.py "$@"
