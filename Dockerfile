# sidecar-agent image: `docker build -t sidecar-agent:0.1.0 .`
#
# Two stages on the same slim Python base: the first installs the agent and its dependencies
# into a virtualenv (every dependency ships manylinux wheels, so nothing is compiled and no
# compiler is installed), the second copies only that virtualenv (pip removed). The final image
# has no compiler and no curl, and runs as an unprivileged numeric user.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/sidecar-agent
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
# [fast] adds uvloop. --only-binary keeps the build honest: a dependency without a wheel for
# this platform fails here instead of needing a compiler. pip is removed from the result.
RUN /opt/sidecar-agent/bin/pip install --only-binary=:all: ".[fast]" \
    && /opt/sidecar-agent/bin/pip uninstall --yes pip

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="sidecar-agent" \
      org.opencontainers.image.description="Health probes, request IDs, security headers, JSON logs and metrics beside any HTTP API" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 agent \
    && useradd --system --uid 10001 --gid agent --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin agent
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
