"""The chart's pod under ``podman kube play``: the rendered Deployment and ConfigMap with the built
image and a small app that handles SIGTERM, probed the way the kubelet probes, then stopped.

The pod gets a network namespace of its own with its own IP (tests/support/netns.py); podman
plays it with ``--network host`` inside that namespace. What podman does not do as Kubernetes
does, and so what this test cannot show (README, "The image is tested"):

* readiness gating: no Service or endpoints, so a 503 from /health/ready takes nothing out of
  rotation; the test only reads the 503s. startupProbe and readinessProbe are ignored;
* livenessProbe becomes a podman healthcheck that runs ``curl`` inside the container (no curl in
  the image, and the named port is not resolved), and it only runs with systemd timers: unused;
* lifecycle.preStop is not run: the app gets SIGTERM at the same moment as the agent, instead of
  after its preStop sleep, so it stops answering while the agent still drains;
* terminationGracePeriodSeconds is not applied (the stop timeout stays podman's 10 s): the test
  stops the pod with ``-t <terminationGracePeriodSeconds>`` as the kubelet would;
* containerPort entries become host port mappings, which need bridge or slirp4netns networking:
  the test strips ``ports`` from the containers (after resolving the probes' named ports);
* the downward API's ``metadata.namespace`` is refused, and a played Secret's ``secretKeyRef`` fails
  (podman 4.3 parses the Secret as JSON): the test writes both values in (the namespace, the
  admin token from the rendered Secret).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.agent import http_get
from tests.support.chart import agent_toml, manifests, one
from tests.support.image import BuiltImage
from tests.support.pod_netns import PodNetwork, pod_network
from tests.support.podman import podman

pytestmark = pytest.mark.slow

APP_SOURCE = (Path(__file__).parent / "pod_app.py").read_text()
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
KUBELET_HEADERS = {"User-Agent": "kube-probe/1.30", "Accept": "*/*"}


@dataclass
class PlayedPod:
    name: str
    network: PodNetwork
    deployment: dict[str, Any]  # as rendered, before anything was stripped
    agent_config: dict[str, Any]  # the ConfigMap's agent.toml

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return spec

    def container(self, name: str) -> dict[str, Any]:
        return next(c for c in self.spec["containers"] if c["name"] == name)

    def port(self, container: dict[str, Any], port: int | str) -> int:
        """A probe's port: a number, or the name of one of the container's ports."""
        if isinstance(port, int):
            return port
        return next(int(p["containerPort"]) for p in container["ports"] if p.get("name") == port)


def _values(image: BuiltImage, release: str) -> dict[str, Any]:
    base_repository, base_tag = image.base.reference.rsplit(":", 1)
    agent_repository, agent_tag = image.reference.rsplit(":", 1)
    return {
        "replicaCount": 1,
        "app": {
            "image": {"repository": base_repository, "tag": base_tag},
            "command": ["python", "-c", APP_SOURCE],
            "securityContext": {"runAsUser": 65534, "runAsGroup": 65534},  # nobody: runAsNonRoot holds
        },
        "agent": {"image": {"repository": agent_repository, "tag": agent_tag}},
    }


def _playable(docs: list[dict[str, Any]], release: str) -> list[dict[str, Any]]:
    """The Deployment and ConfigMap, without what podman cannot play here (see the docstring)."""
    kept = [json.loads(json.dumps(d)) for d in docs if d["kind"] in ("Deployment", "ConfigMap")]
    secrets = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "Secret"}
    spec = one(kept, "Deployment")["spec"]["template"]["spec"]
    for container in spec["containers"]:
        container.pop("ports", None)
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            # podman 4.3 resolves fieldRef metadata.name but not metadata.namespace: the value the
            # kubelet would give (the chart is rendered for namespace "prod").
            if source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                env.pop("valueFrom")
                env["value"] = "prod"
            # and it reads a played Secret back as JSON, which fails: the rendered Secret's value.
            elif (ref := source.get("secretKeyRef")) and ref["name"] in secrets:
                env.pop("valueFrom")
                env["value"] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    # emptyDir volumes become podman volumes named after them: unique names, removed afterwards.
    renamed = {v["name"]: f"{release}-{v['name']}" for v in spec["volumes"] if "emptyDir" in v}
    for volume in spec["volumes"]:
        volume["name"] = renamed.get(volume["name"], volume["name"])
    for container in spec["containers"]:
        for mount in container.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])
    return kept


@pytest.fixture(scope="module")
def pod(agent_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory, container_report: list[str]) -> Iterator[PlayedPod]:
    release = f"pod{uuid.uuid4().hex[:6]}"
    docs = manifests(_values(agent_image, release), release=release)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["name"] == "app"
    playable = _playable(docs, release)
    path = tmp_path_factory.mktemp("pod") / "pod.yaml"
    path.write_text(yaml.safe_dump_all(playable))
    # podman makes a volume of each ConfigMap (named after it) and each emptyDir (after the volume).
    volumes = [d["metadata"]["name"] for d in playable if d["kind"] == "ConfigMap"]
    volumes += [v["name"] for v in one(playable, "Deployment")["spec"]["template"]["spec"]["volumes"] if "emptyDir" in v]
    with pod_network() as network:
        config = tomllib.loads(agent_toml(docs))
        played = PlayedPod(f"{deployment['metadata']['name']}-pod-0", network, deployment, config)
        try:
            podman("kube", "play", "--network", "host", str(path), enter=network.enter(), timeout=300)
            stop_timeout = podman("inspect", "--format", "{{.Config.StopTimeout}}", f"{played.name}-agent").stdout.strip()
            container_report.append(
                f"pod: kube play in its own network namespace, pod IP {network.pod_ip}; stripped: containers[].ports; "
                f"stop timeout as played: {stop_timeout} s (terminationGracePeriodSeconds "
                f"{played.spec['terminationGracePeriodSeconds']} not applied)"
            )
            yield played
        finally:
            podman("pod", "rm", "--force", played.name, check=False, timeout=120)
            for volume in volumes:
                podman("volume", "rm", "--force", volume, check=False)


def kubelet_probe(pod: PlayedPod, container: dict[str, Any], probe: dict[str, Any]) -> int | None:
    """One HTTP probe as the kubelet sends it: GET pod IP:port/path, its headers, its timeout.
    The status, or None when the connection failed or timed out (a failure either way)."""
    get = probe["httpGet"]
    assert get.get("scheme", "HTTP") == "HTTP"
    url = f"http://{pod.network.pod_ip}:{pod.port(container, get['port'])}{get['path']}"
    try:
        return http_get(url, headers=KUBELET_HEADERS, timeout=probe.get("timeoutSeconds", 1)).status
    except OSError:
        return None


def _passes(status: int | None) -> bool:
    return status is not None and 200 <= status < 400  # the kubelet's rule for httpGet


def test_every_probe_the_chart_defines_passes_at_the_pod_ip(pod: PlayedPod):
    probed = []
    for container in pod.spec["containers"]:
        for kind in PROBES:  # startup first: the kubelet holds the other two until it passes
            probe = container.get(kind)
            if not probe:
                continue
            deadline = time.monotonic() + min(60, probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3))
            while not _passes(status := kubelet_probe(pod, container, probe)) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _passes(status), f"{container['name']} {kind} {probe['httpGet']}: {status}\n{_logs(pod, container['name'])}"
            probed.append(f"{container['name']}.{kind}")
    assert {"agent.startupProbe", "agent.readinessProbe", "agent.livenessProbe"} <= set(probed)


def test_prometheus_scrapes_the_annotated_port_and_path(pod: PlayedPod):
    annotations = pod.deployment["spec"]["template"]["metadata"]["annotations"]
    url = f"http://{pod.network.pod_ip}:{annotations['prometheus.io/port']}{annotations['prometheus.io/path']}"
    response = http_get(url, headers={"User-Agent": "Prometheus/3.0"})
    assert response.status == 200 and b"agent_check_status" in response.body


def test_a_request_at_the_pod_ip_goes_through_the_agent_to_the_app(pod: PlayedPod):
    agent = pod.container("agent")
    port = pod.port(agent, "http")
    response = http_get(f"http://{pod.network.pod_ip}:{port}/api/anything")
    assert response.status == 200 and response.json() == {"status": "ok"}
    assert response.headers["X-Request-ID"]


def test_stopping_the_pod_drains_the_agent_and_both_exit_0(pod: PlayedPod, container_report: list[str]):
    agent = pod.container("agent")
    readiness = agent["readinessProbe"]
    seen: list[int | None] = []
    stopping = threading.Event()

    def watch_readiness() -> None:  # the kubelet keeps probing readiness while the pod terminates
        while not stopping.is_set():
            seen.append(kubelet_probe(pod, agent, readiness))
            time.sleep(0.25)

    watcher = threading.Thread(target=watch_readiness)
    watcher.start()
    grace_s = pod.spec["terminationGracePeriodSeconds"]
    started = time.monotonic()
    try:
        podman("pod", "stop", "--time", str(grace_s), pod.name, timeout=grace_s + 60)
    finally:
        stop_s = time.monotonic() - started
        stopping.set()
        watcher.join()

    drain_delay_s = pod.agent_config["server"]["drain_delay_s"]
    for container in ("agent", "app"):
        state = json.loads(podman("inspect", f"{pod.name}-{container}").stdout)[0]["State"]
        assert state["ExitCode"] == 0, f"{container}: {state}\n{_logs(pod, container)}"
    assert 503 in seen, f"readiness never turned 503 while draining: {seen}"
    assert drain_delay_s - 0.5 <= stop_s < grace_s, stop_s
    messages = [json.loads(line)["message"] for line in _logs(pod, "agent").splitlines() if line.startswith("{")]
    assert "signal received: draining" in messages and messages[-1] == "agent stopped", messages[-5:]
    container_report.append(
        f"pod stop -t {grace_s}: agent drained {drain_delay_s} s, readiness 503 during it, both containers exit 0 "
        f"in {stop_s:.1f} s"
    )


def _logs(pod: PlayedPod, container: str) -> str:
    return podman("logs", f"{pod.name}-{container}", check=False).stdout
