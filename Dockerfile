# sidecar-agent image: `docker build -t sidecar-agent:0.1.0 .` (podman/buildah: add
# `--format docker`, or the HEALTHCHECK is dropped: the OCI image format has no healthcheck).
#
# Two stages on the same slim Python base. The build stage installs a C compiler and, in a
# build-only virtualenv (/opt/build), the locked build tools (setuptools, mypy for mypyc); it
# builds the agent's wheel with them, which compiles the request path (agent/compiled.py) to C
# extension modules, and installs that wheel and the locked dependencies (manylinux wheels, none
# compiled here) into the runtime virtualenv /opt/sidecar-agent, which never gets pip. The build
# fails unless the compiled request path is what runs. The final stage copies only the runtime
# virtualenv: no compiler, no curl, no pip, no setuptools, no mypy, and an unprivileged numeric user.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# gcc for mypyc's C, in this stage only. python:*-slim ships Python's headers; a base with Debian's
# own Python (the test suite's stand-in, tests/support/image.py) does not, so python3-dev comes in
# here only where Python.h is missing. On python:*-slim it would bring Debian's second Python; in
# the stand-in base it would add ~60 MB (libpython's static library, libc6-dev, kernel headers) to
# every final image built on it, which the real one does not have.
RUN include="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
           $([ -f "$include/Python.h" ] || echo python3-dev) \
    && rm -rf /var/lib/apt/lists/*
# Two virtualenvs: /opt/build holds pip and the build tools; the runtime one is made without pip
# and filled by /opt/build's pip (--python), so no build tool ever reaches it.
RUN python -m venv /opt/build \
    && python -m venv --without-pip /opt/sidecar-agent
WORKDIR /src
# Dependencies first, exactly as locked (versions and sha256 hashes; scripts/lock.sh refreshes
# both files), so these layers stay cached while only the agent changes. --only-binary keeps the
# build honest: a dependency without a wheel for this platform fails here instead of being
# compiled. requirements-build.lock is [build-system] requires (setuptools, mypy and mypy's own
# dependencies), pinned the same way, for the build virtualenv only.
COPY requirements.lock requirements-build.lock ./
RUN /opt/build/bin/pip install --require-hashes --only-binary=:all: -r requirements-build.lock \
    && /opt/build/bin/pip --python /opt/sidecar-agent/bin/python install --require-hashes --only-binary=:all: \
        -r requirements.lock
COPY pyproject.toml setup.py README.md ./
COPY agent ./agent
# The agent alone: its wheel built with the locked tools (no isolation, no index; setup.py compiles
# the request path with mypyc, -v shows what it did or why it did not), then installed without
# dependencies or an index.
RUN /opt/build/bin/pip wheel -v --no-deps --no-index --no-build-isolation . -w /wheels \
    && /opt/build/bin/pip --python /opt/sidecar-agent/bin/python install --no-deps --no-index /wheels/sidecar_agent-*.whl
# setup.py builds pure Python when it cannot compile (saying why, in the step above); the image
# must never ship that silently. -I: the installed agent, not /src/agent.
RUN /opt/sidecar-agent/bin/python -I -c 'import importlib, sys, agent.compiled as c; \
mods = [importlib.import_module(m) for m in c.COMPILED_MODULES]; print("request path:", c.code); \
sys.exit(not (c.code.startswith("compiled") and all(map(c.is_compiled, mods))))'

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="sidecar-agent" \
      org.opencontainers.image.description="Health probes, request IDs, security headers, JSON logs and metrics beside any HTTP API" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
# The base's own pip and setuptools go too (image scanners report their CVEs, and nothing here
# installs packages at run time): site-packages and ensurepip's bundled wheels on python:*-slim,
# /usr/share/python-wheels on a Debian-packaged Python. The globs cover every PYTHON_VERSION.
RUN groupadd --system --gid 10001 agent \
    && useradd --system --uid 10001 --gid agent --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin agent \
    && rm -rf /usr/local/bin/pip /usr/local/bin/pip3* /usr/local/lib/python3*/ensurepip/_bundled /usr/share/python-wheels \
    && for dir in /usr/local/lib/python3*/site-packages; do \
           rm -rf "$dir"/pip "$dir"/pip-* "$dir"/setuptools "$dir"/setuptools-* "$dir"/pkg_resources \
                  "$dir"/_distutils_hack "$dir"/distutils-precedence.pth "$dir"/wheel "$dir"/wheel-*; \
       done
COPY --from=build /opt/sidecar-agent /opt/sidecar-agent
# The default config is the built-in defaults plus comments; mount your own file over it
# (Kubernetes: a ConfigMap at /etc/sidecar-agent) or override keys with AGENT_* variables.
COPY deploy/docker/agent.toml /etc/sidecar-agent/agent.toml
ENV PATH="/opt/sidecar-agent/bin:${PATH}" \
    AGENT_CONFIG=/etc/sidecar-agent/agent.toml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# 8000: main listener (proxy + /health/*); 9464: admin listener (/metrics, full health details).
EXPOSE 8000 9464
# The agent drains on SIGTERM (readiness 503, keeps serving server.drain_delay_s, then waits up
# to server.shutdown_timeout_s): give `docker stop` a --time above their sum.
STOPSIGNAL SIGTERM
# Liveness only reflects the agent itself, so a database outage never marks the container
# unhealthy. `probe` is a small stdlib HTTP client: no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sidecar-agent", "probe", "live", "--timeout", "3"]
ENTRYPOINT ["sidecar-agent"]
CMD ["run"]
