# codexgate as a container image: the gateway runs as a user of its own (UID/GID 10001), keeps
# its SQLite database in the /data volume and drains on SIGTERM (docs/install.md, "Container").
#
#   docker build -t codexgate:local --build-arg VERSION="$(python3 -c 'import codexgate; print(codexgate.__version__)')" .
#   docker run -d --name codexgate -p 127.0.0.1:8787:8787 -v codexgate-data:/data codexgate:local
#
# Checked by tests/process/test_container.py, which builds it on a Debian base it makes itself.

# Any Debian-like image with python3 (3.11 or later), its venv module and useradd. The default,
# python:3.12-slim: every binary dependency (aiohttp, asyncpg, orjson, uvloop, brotli, zstandard)
# has a manylinux wheel for it, so the builder needs no compiler, and it is one minor version from
# the 3.11 that codexgate's tests run on. 3.13 has those wheels too
# (--build-arg BASE_IMAGE=python:3.13-slim).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# The same path as in the final stage: a virtual environment's scripts name their interpreter by
# its absolute path.
RUN python3 -m venv /opt/codexgate
# Only what building the wheel needs comes in (.dockerignore lists it).
COPY . /src
# pip builds the wheel from the source (the migrations and templates go inside it) and installs
# it with the fast extra (uvloop); pip itself is not needed to run and leaves with setuptools.
RUN /opt/codexgate/bin/pip install '/src[fast]' \
    && /opt/codexgate/bin/pip uninstall --yes pip setuptools

FROM ${BASE_IMAGE}
# A fixed UID and GID, so that a bind-mounted /data or a secret file can be given to it
# (chown 10001:10001). /data is its own and private: a named volume starts as a copy of it.
RUN groupadd --system --gid 10001 codexgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin codexgate \
    && install -d -m 0700 -o 10001 -g 10001 /data
COPY --from=builder /opt/codexgate /opt/codexgate
# After the layers, so that a new version rebuilds none of them.
ARG VERSION=unknown
LABEL org.opencontainers.image.title="codexgate" \
      org.opencontainers.image.description="A streaming gateway for OpenAI Codex clients that records every account's rate-limit windows." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

# SHUTDOWN_GRACE: `docker stop` sends SIGKILL 10 s after SIGTERM unless told otherwise (--time,
# --stop-timeout, compose's stop_grace_period). Streams in flight get 5 s to finish, what is left
# is closed within 2 s, and the queued snapshots are written before the 10 s are up. With a
# longer stop timeout, raise this with it (codexgate's own default is 30 s).
ENV PATH=/opt/codexgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CODEXGATE_DB=/data/codexgate.db \
    CODEXGATE_HOST=0.0.0.0 \
    CODEXGATE_SHUTDOWN_GRACE=5
VOLUME /data
# Relative paths (`codexgate backup copy.db`, a ./codexgate.toml settings file) are in the volume.
WORKDIR /data
USER 10001:10001
EXPOSE 8787

# healthz answers 200 whenever the gateway serves (docs/api.md); the port and prefix follow the
# variables (not the --port or --admin-prefix flags). No curl in a slim image: Python's urllib.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/codexgate/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/%s/healthz' % (os.environ.get('CODEXGATE_PORT', '8787'), os.environ.get('CODEXGATE_ADMIN_PREFIX', 'codexgate')), timeout=4)"]

# Exec form: codexgate is PID 1 itself, gets docker stop's SIGTERM and drains (its SIGTERM and
# SIGINT handlers are installed once it listens; it starts no child processes to reap).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/codexgate/bin/codexgate"]
CMD ["serve"]
