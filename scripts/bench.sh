#!/usr/bin/env bash
# make bench: the private MariaDB, GNU time if missing, then scripts/bench.py (see its docstring).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/mariadb.sh start
if [[ ! -x /usr/bin/time ]]; then
  echo "Installing GNU time (Debian package 'time'): the benchmark reads peak memory from it"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi
exec venv/bin/python scripts/bench.py "$@"
