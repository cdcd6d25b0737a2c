# panorama-elt in a container: settings (and a local datalake, if any) in the /config volume.
#
#   make docker-build      # docker build --build-arg VERSION=<v> -t panorama-elt:<v> -t panorama-elt:latest .
#   docker run --rm -v "$PWD/config:/config" panorama-elt python panorama.py test-connections
#
# BASE_IMAGE may be any Debian-like image with python3 >= 3.11 and its venv module
# (`make docker-check` builds this file on a local Debian bookworm base with buildah).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# The dependencies live in their own virtualenv, first on PATH, so `python` is the project's
# interpreter on every base (Debian's own python3 refuses system-wide pip installs). It is not
# venv/ beside panorama.py, so the launcher runs directly with it.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PANORAMA_SETTINGS=/config/panorama_settings.yaml

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt /opt/panorama-elt/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install -r /opt/panorama-elt/requirements.txt

# A fixed numeric uid/gid: `chown 10001 config/` on the host makes a bind mount writable, and
# Kubernetes' runAsNonRoot can verify it.
ARG UID=10001
RUN groupadd --gid "${UID}" panorama \
 && useradd --uid "${UID}" --gid panorama --home-dir /home/panorama --create-home \
      --shell /usr/sbin/nologin panorama \
 && mkdir -p /config \
 && chown panorama:panorama /config

WORKDIR /opt/panorama-elt
COPY panorama.py panorama_settings.yaml.template ./
COPY panorama_elt ./panorama_elt
RUN python -m compileall -q panorama_elt

# Last, so a new version does not invalidate the cached dependency layer.
ARG VERSION=unknown
LABEL org.opencontainers.image.title="panorama-elt" \
      org.opencontainers.image.description="Copy Open edX and MySQL data into a datalake" \
      org.opencontainers.image.version="${VERSION}"

USER ${UID}:${UID}
VOLUME ["/config"]
CMD ["python", "panorama.py", "--help"]
