#!/usr/bin/env bash
# Run a PRIVATE MariaDB server for panorama-elt's tests, demo and benchmark.
#
#   scripts/mariadb.sh start    install (if needed), initialise, start, create user/db, write env
#   scripts/mariadb.sh stop     clean shutdown (succeeds if not running)
#   scripts/mariadb.sh status   exit 0 + one line if running, exit 1 otherwise
#   scripts/mariadb.sh client   `mariadb` client as root over the private socket (extra args passed)
#
# Everything lives in ${PANORAMA_BUILD_DIR:-<repo>/build}/mariadb. The system datadir
# (/var/lib/mysql) and the system mariadb service are never used or touched.
# PANORAMA_MYSQL_TLS_DIR=<dir> (with its own PANORAMA_BUILD_DIR and port) makes the server offer
# TLS with <dir>/ca.pem, <dir>/server.pem and <dir>/server-key.pem: the TLS tests run such a
# second instance, so the main one (tests, demo, bench) keeps running without TLS.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${PANORAMA_BUILD_DIR:-$REPO/build}"
PORT="${PANORAMA_MYSQL_PORT:-33061}"
TLS_DIR="${PANORAMA_MYSQL_TLS_DIR:-}"
mkdir -p "$BUILD_DIR/mariadb"
MDB="$(cd "$BUILD_DIR/mariadb" && pwd)"   # absolute, even if PANORAMA_BUILD_DIR is relative
DATADIR="$MDB/data" SOCKET="$MDB/mysqld.sock" PIDFILE="$MDB/mysqld.pid"
LOG="$MDB/mariadb.log" TMPDIR_DB="$MDB/tmp" CNF="$MDB/my.cnf" ENVFILE="$MDB/env"

die() { echo "mariadb.sh: $*" >&2; exit 1; }

# First of the given program names found on PATH or in /usr/sbin (servers live there).
find_bin() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    if [[ -x "/usr/sbin/$name" ]]; then echo "/usr/sbin/$name"; return 0; fi
  done
  return 1
}

install_packages() {
  echo "Installing mariadb-server/mariadb-client from Debian packages..."
  # policy-rc.d returning 101 forbids maintainer scripts from starting the system service.
  local policy=/usr/sbin/policy-rc.d
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server mariadb-client
  # Belt and braces: keep the system service stopped and disabled (works offline without systemd).
  systemctl disable --now mariadb >/dev/null 2>&1 || systemctl disable mariadb >/dev/null 2>&1 || true
}

resolve_bins() {
  MARIADBD="$(find_bin mariadbd mysqld)" || return 1
  CLIENT="$(find_bin mariadb mysql)" || return 1
  ADMIN="$(find_bin mariadb-admin mysqladmin)" || return 1
  INSTALL_DB="$(find_bin mariadb-install-db mysql_install_db)" || return 1
}

# Our own option file: passed with --defaults-file so /etc/mysql/*.cnf is never read.
write_cnf() {
  local user_line="" tls_lines=""
  # mariadbd refuses to run as root unless told to explicitly.
  [[ "$(id -u)" == 0 ]] && user_line="user=root"
  if [[ -n "$TLS_DIR" ]]; then
    tls_lines="ssl_ca=$TLS_DIR/ca.pem
ssl_cert=$TLS_DIR/server.pem
ssl_key=$TLS_DIR/server-key.pem"
  fi
  cat > "$CNF" <<EOF
[mysqld]
$user_line
datadir=$DATADIR
socket=$SOCKET
pid-file=$PIDFILE
log-error=$LOG
tmpdir=$TMPDIR_DB
bind-address=127.0.0.1
port=$PORT
skip-name-resolve
skip-log-bin
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
# Permissive on purpose: the tests insert zero dates (0000-00-00 00:00:00) like legacy edxapp data.
sql-mode=NO_ENGINE_SUBSTITUTION
# Small footprint for a 2-core test machine; durability is not a concern here.
innodb_buffer_pool_size=256M
innodb_flush_log_at_trx_commit=2
max_connections=200
$tls_lines

[client]
socket=$SOCKET
user=root
EOF
}

admin() { "$ADMIN" --defaults-file="$CNF" "$@"; }
sql() { "$CLIENT" --defaults-file="$CNF" --batch --skip-column-names -e "$1"; }

is_running() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null &&
    admin --connect-timeout=2 ping >/dev/null 2>&1
}

cmd_start() {
  resolve_bins || { install_packages; resolve_bins || die "MariaDB binaries still missing after install"; }
  mkdir -p "$DATADIR" "$TMPDIR_DB"
  write_cnf
  if ! is_running; then
    # Initialise once; a datadir without the marker is a failed init, so redo it from scratch.
    if [[ ! -f "$MDB/.initialized" ]]; then
      rm -rf "$DATADIR" && mkdir -p "$DATADIR"
      "$INSTALL_DB" --defaults-file="$CNF" --user="$(id -un)" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve >"$MDB/install-db.log" 2>&1 ||
        { cat "$MDB/install-db.log" >&2; die "mariadb-install-db failed"; }
      touch "$MDB/.initialized"
    fi
    rm -f "$SOCKET" "$PIDFILE"   # stale leftovers from a crash
    # setsid + redirections fully detach the server from this shell and its terminal.
    setsid "$MARIADBD" --defaults-file="$CNF" </dev/null >>"$LOG" 2>&1 &
    local pid=$! i
    for ((i = 0; i < 120; i++)); do
      admin --connect-timeout=1 ping >/dev/null 2>&1 && break
      kill -0 "$pid" 2>/dev/null || break   # died early: no point waiting
      sleep 0.5
    done
    if ! admin --connect-timeout=1 ping >/dev/null 2>&1; then
      tail -n 30 "$LOG" >&2 || true
      die "server did not come up (log: $LOG)"
    fi
  fi
  # Idempotent: ALTER USER keeps the password right even if someone changed it.
  local u
  for u in "'panorama'@'127.0.0.1'" "'panorama'@'localhost'"; do
    sql "CREATE USER IF NOT EXISTS $u IDENTIFIED BY 'panorama';
         ALTER USER $u IDENTIFIED BY 'panorama';
         GRANT ALL PRIVILEGES ON *.* TO $u WITH GRANT OPTION;"
  done
  sql "CREATE DATABASE IF NOT EXISTS edxapp CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"
  local port; port="$(sql 'SELECT @@port')"   # the real port, even if the env var changed since start
  cat > "$ENVFILE" <<EOF
PANORAMA_MYSQL_HOST=127.0.0.1
PANORAMA_MYSQL_PORT=$port
PANORAMA_MYSQL_USER=panorama
PANORAMA_MYSQL_PASSWORD=panorama
PANORAMA_MYSQL_SOCKET=$SOCKET
EOF
  echo "MariaDB $(sql 'SELECT VERSION()' | cut -d- -f1) running on 127.0.0.1:$port (datadir $DATADIR)"
}

cmd_stop() {
  [[ -f "$PIDFILE" ]] || { echo "MariaDB not running"; return 0; }
  resolve_bins || true
  local pid i; pid="$(cat "$PIDFILE")"
  [[ -n "${ADMIN:-}" ]] && admin --connect-timeout=2 shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PIDFILE" "$SOCKET"
  echo "MariaDB stopped"
}

cmd_status() {
  resolve_bins || { echo "MariaDB not installed"; return 1; }
  [[ -f "$CNF" ]] && is_running || { echo "MariaDB not running"; return 1; }
  echo "MariaDB $(sql 'SELECT VERSION()' | cut -d- -f1) running on 127.0.0.1:$(sql 'SELECT @@port') (pid $(cat "$PIDFILE"), datadir $DATADIR)"
}

cmd_client() {
  resolve_bins && [[ -f "$CNF" ]] || die "not set up; run: $0 start"
  exec "$CLIENT" --defaults-file="$CNF" "$@"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  client) shift; cmd_client "$@" ;;
  *) echo "usage: $0 {start|stop|status|client [args]}" >&2; exit 2 ;;
esac
