"""A network namespace of the test's own with one veth link to the host: a pod's network.

The pod's side gets ``POD_IP`` and the host's side the other address of a link-local /30
(169.254.0.0/16 is never routed off the link), so the test reaches the pod at its own IP and
ports, as the kubelet does, and the pod's listeners never meet the host's ports. Needs root,
iproute2 and nsenter (util-linux).
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class PodNetwork:
    name: str
    pod_ip: str
    host_ip: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def enter(self) -> list[str]:
        """A command prefix that runs its command in this namespace. nsenter, not ``ip netns
        exec``: that one remounts /sys, and podman then finds no cgroup hierarchy."""
        return ["nsenter", f"--net={self.path}", "--"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def pod_network() -> Iterator[PodNetwork]:
    """A fresh namespace with loopback and a veth link; deleted (link and all) on exit."""
    tag = secrets.token_hex(3)
    subnet = 4 * secrets.randbelow(64)  # 169.254.<x>.<subnet>/30, random so two runs never clash
    third = 100 + secrets.randbelow(100)
    network = PodNetwork(f"sidecar-pod-{tag}", f"169.254.{third}.{subnet + 2}", f"169.254.{third}.{subnet + 1}")
    host_link, pod_link = f"scp{tag}h", f"scp{tag}p"
    _ip("netns", "add", network.name)
    try:
        _ip("-n", network.name, "link", "set", "lo", "up")
        _ip("link", "add", host_link, "type", "veth", "peer", "name", pod_link, "netns", network.name)
        _ip("addr", "add", f"{network.host_ip}/30", "dev", host_link)
        _ip("link", "set", host_link, "up")
        _ip("-n", network.name, "addr", "add", f"{network.pod_ip}/30", "dev", pod_link)
        _ip("-n", network.name, "link", "set", pod_link, "up")
        yield network
    finally:
        subprocess.run(["ip", "netns", "delete", network.name], check=False, capture_output=True, timeout=30)
