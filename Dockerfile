# sidecar-agent image: `docker build -t sidecar-agent:0.1.0 .` (podman/buildah: add
# `--format docker`, or the HEALTHCHECK is dropped: the OCI image format has no healthcheck).
#
# Two stages on the same slim Python base: the first installs the agent and its dependencies
# into a virtualenv (every dependency ships manylinux wheels, so nothing is compiled and no
# compiler is installed), the second copies only that virtualenv. The final image has no
# compiler, no curl, no pip and no setuptools, and runs as an unprivileged numeric user.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/sidecar-agent
WORKDIR /src
# Dependencies first, exactly as locked (versions and sha256 hashes; scripts/lock.sh refreshes
# both files), so this layer stays cached while only the agent changes. --only-binary keeps the
# build honest: a dependency without a wheel for this platform fails here instead of needing a
# compiler. requirements-build.lock is the build backend (setuptools), pinned the same way.
COPY requirements.lock requirements-build.lock ./
RUN /opt/sidecar-agent/bin/pip install --require-hashes --only-binary=:all: \
        -r requirements.lock -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY agent ./agent
# The agent alone: no dependency resolution, no index, the locked backend instead of a fresh one.
# Then the backend and pip leave the virtualenv: the image needs neither at run time.
RUN /opt/sidecar-agent/bin/pip install --no-deps --no-index --no-build-isolation . \
    && /opt/sidecar-agent/bin/pip uninstall --yes setuptools pip

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
