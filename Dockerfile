# syntax=docker/dockerfile:1
# zerocopy-server in a small image.
#
#   docker build -t zerocopy-server .
#   docker run --rm -p 8000:8000 -v "$PWD/files:/srv:ro" zerocopy-server
#
# Anything after the image name replaces CMD (the options below), e.g.
#   docker run ... zerocopy-server --bind 0.0.0.0 --port 8000 --directory /srv --access-log off
# Options can also be set from the environment, ZEROCOPY_<OPTION> (the command line wins):
#   docker run ... -e ZEROCOPY_WORKERS=2 -e ZEROCOPY_ACCESS_LOG_FORMAT=json zerocopy-server
# Pre-start check: the same image, volume and options plus --check-config validates them
# and the mounted tree, prints the effective configuration and exits 0 (valid) or 2,
# without listening; run it before `docker run -d` or as a compose/init step:
#   docker run --rm -v "$PWD/files:/srv:ro" zerocopy-server \
#       --check-config --bind 0.0.0.0 --port 8000 --directory /srv --shutdown-timeout 8
# The HEALTHCHECK probes port 8000: keep the server on 8000 inside the container and remap
# with -p HOST:8000 instead. tests/test_deploy_files.py parses this file and runs its
# install and start commands outside Docker: keep RUN steps to plain pip commands.

# The base of both stages: the official slim image by default. Any image with Python 3.10+
# and pip on PATH (as python and pip) and useradd will do, e.g. a mirror of the official
# image, or the Debian-built stand-in the test suite makes where Docker Hub is out of reach:
#   buildah bud --build-arg BASE=localhost/my-python:3.11 -t zerocopy-server .
ARG BASE=python:3.11-slim

# --- builder: turn the source tree, and the dependencies, into wheels -------------------
FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps caches out of server/).
COPY pyproject.toml README.md ./
COPY server ./server
# uvloop and httptools come as prebuilt manylinux wheels (amd64, arm64): no compiler here
# either. The dependencies' wheels are collected too, so the final stage installs offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- final: the wheels installed into a clean slim image, no source, no build tools ------
FROM ${BASE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are bind-mounted from the builder (BuildKit), so they never land in a layer.
# Unpinned on purpose: --no-index, the only zerocopy-server there is the one just built.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels zerocopy-server
# A dedicated unprivileged user. USER is numeric so that Kubernetes' runAsNonRoot can
# verify it without an /etc/passwd lookup.
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin zerocopy
USER 10001:10001
# The served tree: mount it (read-only is enough: the server never writes to it).
VOLUME /srv
WORKDIR /srv
EXPOSE 8000
# SIGTERM = graceful: stop accepting, let downloads in flight finish for up to
# --shutdown-timeout seconds, exit 0. `docker stop` waits 10 s before SIGKILL, so the
# default CMD drains for at most 8 s; raise both together (docker stop -t / --stop-timeout).
STOPSIGNAL SIGTERM
# A real HTTP request with what the slim image has (no curl): python's urllib without the
# error processor (so 404, e.g. for an empty /srv, comes back as a status instead of an
# exception) and without proxies. Any status below 500 is healthy; 5xx or no answer
# (connection refused, timeout: an uncaught exception, exit 1) is unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as r; o = r.OpenerDirector(); o.add_handler(r.HTTPHandler()); sys.exit(o.open('http://127.0.0.1:8000/', timeout=4).status >= 500)"]
# Exec form: the server is PID 1 and receives SIGTERM itself (no shell in between).
ENTRYPOINT ["zerocopy-server"]
CMD ["--bind", "0.0.0.0", "--port", "8000", "--directory", "/srv", "--shutdown-timeout", "8"]
