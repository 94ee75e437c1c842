"""``[tracing]`` as users set it: ``python -m agent check-config`` / ``run`` in real subprocesses.

A bad value stops the agent with exit 2 and one line naming the key; so does ``enabled = true``
without the ``otlp`` extra (simulated by a ``sitecustomize`` that makes ``opentelemetry.sdk``
unimportable, as an absent package is). Header values never print. The standard ``OTEL_*``
variables fill what the file leaves unset, and the file wins; a real agent then exports where
the environment said, under the service name it said.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO_ROOT
from tests.support.agent import AgentProcess, proxy_config, to_toml
from tests.support.net import free_port
from tests.support.otlp import OtlpReceiver
from tests.support.upstream import UpstreamProcess

HEADER_SECRET = "otlp-header-secret-93be"
ENV_HEADER_SECRET = "otlp-env-secret-1c7a"
NO_SDK = 'import sys\nsys.modules["opentelemetry.sdk"] = None  # import fails, find_spec() is None: not installed\n'


def agent_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OTEL_")) and k != "DATABASE_URL"}
    clean["PYTHONPATH"] = str(REPO_ROOT)
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=30)


def config_file(tmp_path: Path, tracing: dict[str, Any]) -> Path:
    path = tmp_path / "agent.toml"
    content = {"server": {"listen": f"127.0.0.1:{free_port()}"}, "admin": {"enabled": False}, "tracing": tracing}
    path.write_text(to_toml(content))
    return path


def effective_tracing(tmp_path: Path, tracing: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = agent_cli("check-config", "-c", str(config_file(tmp_path, tracing)), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["tracing"]  # type: ignore[no-any-return]


def no_sdk_path(tmp_path: Path) -> str:
    shim = tmp_path / "no-otlp-extra"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_SDK)
    return f"{shim}{os.pathsep}{REPO_ROOT}"


BAD = [
    ("ratio-2", {"sample_ratio": 2}, "tracing.sample_ratio"),
    ("ratio-negative", {"sample_ratio": -0.1}, "tracing.sample_ratio"),
    ("ftp", {"endpoint": "ftp://x"}, "tracing.endpoint"),
    ("not-a-url", {"endpoint": "not a url"}, "tracing.endpoint"),
    ("queue-0", {"max_queue": 0}, "tracing.max_queue"),
]


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(("tracing", "key"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_a_bad_value_exits_2_naming_its_key(tmp_path: Path, command: str, tracing: dict[str, Any], key: str) -> None:
    result = agent_cli(command, "-c", str(config_file(tmp_path, {"enabled": True, **tracing})), cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith(f"sidecar-agent: invalid configuration: {key}:"), line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_enabled_without_the_otlp_extra_exits_2_naming_tracing_enabled(tmp_path: Path, command: str) -> None:
    env = {"PYTHONPATH": no_sdk_path(tmp_path)}
    result = agent_cli(command, "-c", str(config_file(tmp_path, {"enabled": True})), cwd=tmp_path, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("sidecar-agent: invalid configuration: tracing.enabled:"), line
    assert "sidecar-agent[otlp]" in line
    # Without tracing the extra is not needed.
    assert agent_cli("check-config", "-c", str(config_file(tmp_path, {"enabled": False})), cwd=tmp_path, env=env).returncode == 0


def test_header_values_are_masked(tmp_path: Path) -> None:
    env = {"AGENT_TRACING_ENABLED": "true"}
    result = agent_cli(
        "check-config", "-c", str(config_file(tmp_path, {"headers": {"x-api-key": HEADER_SECRET}})), cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tracing"]["headers"] == {"x-api-key": "<SECRET>"}
    assert HEADER_SECRET not in result.stdout + result.stderr

    elsewhere = tmp_path / "no-file-here"  # check-config without -c reads ./agent.toml
    elsewhere.mkdir()
    from_env = agent_cli(
        "check-config", cwd=elsewhere, env={"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{ENV_HEADER_SECRET}"}
    )
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout)["tracing"]["headers"] == {"authorization": "<SECRET>"}
    assert ENV_HEADER_SECRET not in from_env.stdout + from_env.stderr


ENV_CASES = [
    (
        "traces-endpoint",
        {},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/custom"},
        {"endpoint": "http://traces:4318/custom"},
    ),
    ("base-endpoint", {}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318/"}, {"endpoint": "http://base:4318/v1/traces"}),
    (
        "traces-endpoint-wins-over-base",
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/v1/traces"},
        {"endpoint": "http://traces:4318/v1/traces"},
    ),
    ("service-name", {}, {"OTEL_SERVICE_NAME": "billing"}, {"service_name": "billing"}),
    (
        "the-file-wins",
        {"endpoint": "http://file:4318/v1/traces", "service_name": "from-file"},
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/x",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318",
            "OTEL_SERVICE_NAME": "env",
        },
        {"endpoint": "http://file:4318/v1/traces", "service_name": "from-file"},
    ),
    ("nothing-set", {}, {}, {"endpoint": "http://127.0.0.1:4318/v1/traces", "service_name": "sidecar-agent"}),
]


@pytest.mark.parametrize(("file", "env", "expected"), [case[1:] for case in ENV_CASES], ids=[case[0] for case in ENV_CASES])
def test_otel_variables_fill_what_the_file_leaves_unset(
    tmp_path: Path, file: dict[str, Any], env: dict[str, str], expected: dict[str, str]
) -> None:
    tracing = effective_tracing(tmp_path, file, env)
    assert {key: tracing[key] for key in expected} == expected


def test_an_agent_exports_where_the_environment_says(
    agent_factory: Callable[..., AgentProcess], healthy_upstream: UpstreamProcess
) -> None:
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "from-the-environment"}
        agent = agent_factory(proxy_config(healthy_upstream.url, tracing={"enabled": True, "sample_ratio": 1.0}), env=env)
        assert agent.get("/echo/env").status == 200
        [span] = receiver.wait_for_spans(lambda s: s.attributes["url.path"] == "/echo/env")
        assert span.resource["service.name"] == "from-the-environment"
