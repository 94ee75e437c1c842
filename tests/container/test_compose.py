"""docker-compose.yml's api and agent services, run by podman as compose would run them, and
stopped in compose down's order (the agent first: it depends on the api): under 3 s in all.

podman-compose is not used: the postgres service's image (postgres:16) cannot be pulled where
no registry answers. So the agent runs without DATABASE_URL, and the api on the base image the
agent was built on. Both share a network namespace of the test's own (compose's network: the
services' own ports, no clash with the host's), where the api is 127.0.0.1 instead of ``api``.
PostgreSQL's own stop (the image's STOPSIGNAL SIGINT, a fast shutdown) is not measured.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support import REPO_ROOT
from tests.support.agent import http_get
from tests.support.image import BuiltImage
from tests.support.pod_netns import PodNetwork, pod_network
from tests.support.podman import podman, remove_container

pytestmark = pytest.mark.slow

COMPOSE_DOWN_BUDGET_S = 3.0


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return compose["services"]


@pytest.fixture
def network() -> Iterator[PodNetwork]:
    with pod_network() as network:
        yield network


def _run_args(name: str, service: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The podman run flags for a compose service's settings that matter here."""
    args = ["run", "--detach", "--name", name, "--network", "host"]
    args += ["--init"] if service.get("init") else []
    args += ["--user", service["user"]] if "user" in service else []
    args += ["--read-only", "--read-only-tmpfs=false"] if service.get("read_only") else []
    args += [arg for path in service.get("tmpfs", []) for arg in ("--tmpfs", path)]
    args += [arg for cap in service.get("cap_drop", []) for arg in ("--cap-drop", cap)]
    args += [arg for opt in service.get("security_opt", []) for arg in ("--security-opt", opt.replace(":true", ""))]
    args += [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    return args


def _stop(name: str, timeout_s: int) -> tuple[float, int]:
    started = time.monotonic()
    podman("stop", "--time", str(timeout_s), name, timeout=timeout_s + 30)
    elapsed = time.monotonic() - started
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    return elapsed, state["ExitCode"]


def test_compose_down_takes_under_3_s(
    services: dict[str, Any], agent_image: BuiltImage, network: PodNetwork, container_report: list[str]
):
    api, agent = services["api"], services["agent"]
    tag = uuid.uuid4().hex[:6]
    api_name, agent_name = f"compose-api-{tag}", f"compose-agent-{tag}"
    agent_env = {k: str(v) for k, v in agent["environment"].items() if k != "DATABASE_URL"}
    agent_env["AGENT_UPSTREAM_URL"] = agent_env["AGENT_UPSTREAM_URL"].replace("//api:", "//127.0.0.1:")
    grace_s = int(agent["stop_grace_period"].removesuffix("s"))
    try:
        api_env = {k: str(v) for k, v in api.get("environment", {}).items()}
        podman(*_run_args(api_name, api, api_env), agent_image.base.reference, *api["command"], enter=network.enter())
        podman(*_run_args(agent_name, agent, agent_env), agent_image.reference, enter=network.enter())
        ready = f"http://{network.pod_ip}:8000/health/ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http_get(ready).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert http_get(ready).status == 200, podman("logs", agent_name).stdout[-3000:]

        agent_s, agent_code = _stop(agent_name, grace_s)
        api_s, api_code = _stop(api_name, 10)  # compose's default stop_grace_period
    finally:
        remove_container(agent_name)
        remove_container(api_name)
    assert agent_code == 0
    assert api_code == 143, "the file server ends on the SIGTERM that init passed on (128 + 15), not a SIGKILL (137)"
    assert agent_s + api_s < COMPOSE_DOWN_BUDGET_S - 0.5, (agent_s, api_s)  # leaves PostgreSQL half a second
    container_report.append(f"compose down order: agent stopped in {agent_s:.1f} s, api (init: true) in {api_s:.1f} s")
