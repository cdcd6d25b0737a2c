#!/usr/bin/env bash
# `make docker-check`: build the project's Dockerfile WITHOUT a Docker engine and smoke-test it.
#
# buildah (chroot isolation, its storage kept under build/docker) builds the Dockerfile on a
# local Debian bookworm base made with debootstrap (python3 3.11 + venv), standing in for
# python:3.11-slim, which cannot be pulled here. The image then runs: non-root user, --help,
# --version, and test-connections with /config bind-mounted (a local datalake under /config and
# the project's private MariaDB on 127.0.0.1:33061; chroot isolation shares the host network).
#
# Re-runnable: the base rootfs, the base image and the dependency layer are cached under
# build/docker, so later runs only rebuild what changed. Start again with `rm -rf build/docker`.
# Needs root (debootstrap, chroot). Not part of `make test`: the first run takes a minute or more.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
WORK="$REPO/build/docker"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="localhost/panorama-elt-base:$SUITE"
VERSION="$(sed -nE "s/^__version__ = ['\"]([^'\"]+)['\"].*/\1/p" panorama_elt/__about__.py)"
IMAGE="localhost/panorama-elt:$VERSION"
CHECK_CTR=panorama-elt-docker-check
MYSQL_PORT="${PANORAMA_MYSQL_PORT:-33061}"
UID_IN_IMAGE=10001   # the Dockerfile's ARG UID

die() { echo "docker-check: $*" >&2; exit 1; }
step() { printf '\n== %s (%ss so far)\n' "$1" "$SECONDS"; }

[[ "$(id -u)" == 0 ]] || die "run as root (debootstrap and chroot need it)"
[[ -n "$VERSION" ]] || die "no __version__ in panorama_elt/__about__.py"
mkdir -p "$WORK/tmp"

# Every buildah call uses the project's own image storage and scratch space under build/docker,
# never /var/lib/containers/storage. overlay when the kernel allows it (root on ext4/xfs): vfs
# copies the whole filesystem for every layer, which is several times slower and takes GBs.
DRIVER="${DOCKER_CHECK_STORAGE_DRIVER:-}"
bh() {
  TMPDIR="$WORK/tmp" buildah --root "$WORK/storage-$DRIVER" --runroot "$WORK/run-$DRIVER" \
    --storage-driver "$DRIVER" "$@"
}
pick_driver() {
  [[ -n "$DRIVER" ]] && return
  DRIVER=overlay
  bh images >/dev/null 2>&1 || DRIVER=vfs
  echo "buildah storage: $DRIVER under $WORK/storage-$DRIVER"
}
cleanup() {
  bh rm "$CHECK_CTR" >/dev/null 2>&1 || true
  bh umount --all >/dev/null 2>&1 || true   # no mount left behind, even after Ctrl-C
}

install_tools() {
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  ((${#missing[@]} == 0)) && return
  step "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# A minimal Debian root filesystem with python3 (3.11 on bookworm) and its venv module.
make_rootfs() {
  [[ -f "$WORK/rootfs.done" ]] && { echo "base rootfs: cached ($WORK/rootfs)"; return; }
  step "debootstrap $SUITE rootfs (once)"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$WORK/rootfs" "$MIRROR"
  # This host reaches PyPI through a TLS-inspecting proxy whose CA is in
  # /usr/local/share/ca-certificates: the stand-in base trusts it too (python:3.11-slim would
  # need the same on such a host). Nothing of this is in the Dockerfile.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
    chroot "$WORK/rootfs" update-ca-certificates >/dev/null
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$WORK/rootfs/etc/pip.conf"
  fi
  chroot "$WORK/rootfs" apt-get clean
  rm -rf "$WORK/rootfs/var/lib/apt/lists/"*
  touch "$WORK/rootfs.done"
}

# The rootfs as a local image (what `FROM python:3.11-slim` would give).
import_base() {
  if bh inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "base image: cached ($BASE_IMAGE)"
    return
  fi
  step "importing the rootfs as $BASE_IMAGE"
  local ctr mnt
  ctr="$(bh from scratch)"
  mnt="$(bh mount "$ctr")"
  tar -C "$WORK/rootfs" -cf - . | tar -C "$mnt" -xpf -
  bh umount "$ctr" >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
  bh commit --quiet "$ctr" "$BASE_IMAGE" >/dev/null
  bh rm "$ctr" >/dev/null
}

build_image() {
  step "building the Dockerfile (BASE_IMAGE=$BASE_IMAGE)"
  bh bud --isolation chroot --layers --pull=never \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" \
    -t "$IMAGE" -t localhost/panorama-elt:latest -f Dockerfile .
  bh rmi --prune >/dev/null 2>&1 || true   # earlier builds' layers; the cache chain stays
}

# Settings for the check: local datalake inside /config, MySQL on the host's private MariaDB.
write_config() {
  rm -rf "$WORK/config"
  mkdir -p "$WORK/config"
  cat >"$WORK/config/panorama_settings.yaml" <<EOF
datalake:
  type: local
  path: ./datalake          # relative to the settings file: /config/datalake
  base_prefix: openedx
  datalake_database: panorama
datasources:
- type: mysql
  name: openedx_mysql
  mysql_host: 127.0.0.1
  mysql_port: $MYSQL_PORT
  mysql_username: panorama
  mysql_password: panorama
  mysql_database: edxapp
  tables:
  - name: auth_user
EOF
  # What a user does on the host so the image's non-root user can write the volume.
  chown -R "$UID_IN_IMAGE:$UID_IN_IMAGE" "$WORK/config"
}

run_checks() {
  step "running the image"
  bh rm "$CHECK_CTR" >/dev/null 2>&1 || true
  bh from --quiet --pull=never --name "$CHECK_CTR" "$IMAGE" >/dev/null
  # buildah 1.28's `run` mounts an image VOLUME over a -v bind mount of the same path (docker
  # and podman let the bind win): drop the volume from this throw-away container only.
  bh config --volume /config- "$CHECK_CTR"
  run() { bh run --isolation chroot "$@"; }
  local failures=0 out uid settings_env volumes

  uid="$(run "$CHECK_CTR" -- id -u 2>&1)" || true
  settings_env="$(bh inspect --type image --format '{{.OCIv1.Config.Env}}' "$IMAGE" |
    grep -o 'PANORAMA_SETTINGS=[^ ]*' | tr -d ']')"
  report "user uid $uid (not root)" "$([[ "$uid" =~ ^[0-9]+$ && "$uid" != 0 ]] && echo ok)"
  volumes="$(bh inspect --type image --format '{{.OCIv1.Config.Volumes}}' "$IMAGE")"
  report "volumes $volumes" "$([[ "$volumes" == *'/config:'* ]] && echo ok)"
  report "$settings_env" "$([[ "$settings_env" == PANORAMA_SETTINGS=/config/panorama_settings.yaml ]] && echo ok)"

  out="$(run "$CHECK_CTR" -- python panorama.py --help 2>&1)" || true
  report "python panorama.py --help" "$(grep -q test-connections <<<"$out" && echo ok)"
  out="$(run "$CHECK_CTR" -- python panorama.py --version 2>&1)" || true
  report "python panorama.py --version: $out" "$(grep -qF "$VERSION" <<<"$out" && echo ok)"

  if ! bash scripts/mariadb.sh status >/dev/null 2>&1; then
    echo "(starting the project's private MariaDB: scripts/mariadb.sh start)"
    bash scripts/mariadb.sh start >/dev/null
  fi
  write_config
  echo "-- python panorama.py test-connections   (no --settings: \$PANORAMA_SETTINGS)"
  out="$(run -v "$WORK/config:/config" "$CHECK_CTR" -- python panorama.py test-connections 2>&1)" || true
  sed 's/^/   /' <<<"$out"
  report "datasource openedx_mysql (127.0.0.1:$MYSQL_PORT from inside the image)" \
    "$(grep -q '^OK *datasource openedx_mysql' <<<"$out" && echo ok)"
  report "datalake files under /config/datalake" "$(grep -q '^OK *datalake files' <<<"$out" && echo ok)"
  report "datalake catalog (DuckDB)" "$(grep -q '^OK *datalake catalog' <<<"$out" && echo ok)"
  report "/config/datalake written by uid $UID_IN_IMAGE" \
    "$([[ "$(stat -c %u "$WORK/config/datalake" 2>/dev/null)" == "$UID_IN_IMAGE" ]] && echo ok)"
  return "$failures"
}

REPORT=()
# report WHAT RESULT: RESULT "ok" passes, anything else (usually empty) fails.
report() {
  if [[ "$2" == ok ]]; then REPORT+=("OK      $1"); else REPORT+=("FAILED  $1"); failures=$((failures + 1)); fi
}

install_tools
pick_driver
trap cleanup EXIT
make_rootfs
import_base
build_image
status=0
run_checks || status=$?

size="$(bh images --noheading --format '{{.Size}}' "$IMAGE" 2>/dev/null || true)"
size="${size%%$'\n'*}"   # one line per tag
printf '\n== docker-check report: %s (%s), built with buildah %s on %s, %ss\n' \
  "$IMAGE" "${size:-?}" "$(buildah --version | awk '{print $3}')" "$BASE_IMAGE" "$SECONDS"
printf '%s\n' "${REPORT[@]}"
((status == 0)) || die "$status check(s) failed"
echo "all checks passed"
