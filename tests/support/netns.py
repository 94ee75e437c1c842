"""A network namespace of the test's own, joined to this one by a veth pair on a private ``/30``:
a peer that is not loopback, without sending anything through the machine's external address.

``10.200.X.Y/30`` is picked at random among blocks no local address is in; the host end gets the
first address, the namespace end the second, and the traffic never leaves the pair. Names carry
the pid and random hex, so parallel runs do not collide, and teardown deletes only what this run
created (deleting one end of a veth deletes both; deleting the namespace, whatever is in it).
Needs root and iproute2's ``ip`` (scripts/test.sh installs it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

IP = shutil.which("ip")

# Run inside the namespace with the venv's Python: one HTTP request per (method, path, headers).
_CLIENT = r"""
import http.client, json, sys
host, port, requests = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
answers = []
for method, path, headers in requests:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read().decode("utf-8", "replace")
    answers.append({"status": response.status, "headers": dict(response.getheaders()), "body": body})
    conn.close()
print(json.dumps(answers))
"""


class NetnsUnavailable(Exception):
    """Namespaces or veth pairs cannot be made here (not root, no ``ip``, no privilege)."""


@dataclass(frozen=True)
class NetnsLink:
    name: str
    host_ip: str  # this namespace's end: bind servers here (or to 0.0.0.0)
    peer_ip: str  # the other end, the address servers see requests come from

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        assert IP is not None
        return subprocess.run([IP, "netns", "exec", self.name, *argv], capture_output=True, text=True, timeout=timeout)

    def http(self, port: int, requests: Sequence[tuple[str, str, dict[str, str]]]) -> list[dict[str, Any]]:
        """``requests`` sent from inside the namespace to ``host_ip:port``: status, headers, body each."""
        result = self.run([sys.executable, "-c", _CLIENT, self.host_ip, str(port), json.dumps(requests)])
        assert result.returncode == 0, result.stderr
        answers: list[dict[str, Any]] = json.loads(result.stdout)
        return answers


def unavailable_reason() -> str | None:
    if IP is None:
        return "iproute2's ip is not installed (scripts/test.sh installs it)"
    if os.geteuid() != 0:
        return "needs root to make a network namespace (ip netns add)"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    result = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _free_slash30() -> tuple[str, str]:
    """Host and peer address of a ``10.200.0.0/16`` block of four that no local address is in."""
    shown = _ip("-j", "-4", "addr", "show").stdout
    used = [ipaddress.ip_address(a["local"]) for link in json.loads(shown or "[]") for a in link.get("addr_info", [])]
    for _ in range(100):
        network = ipaddress.ip_network(f"10.200.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        if not any(address in network for address in used):
            host, peer = network.hosts()
            return str(host), str(peer)
    raise RuntimeError("no free /30 in 10.200.0.0/16")


@contextmanager
def netns_link() -> Iterator[NetnsLink]:
    """A namespace and veth pair, both deleted on exit, whatever happened in between."""
    reason = unavailable_reason()
    if reason is not None:
        raise NetnsUnavailable(reason)
    suffix = f"{os.getpid()}{secrets.token_hex(2)}"
    name, host_if, peer_if = f"sidecar-test-{suffix}", f"sa{suffix}h", f"sa{suffix}n"  # IFNAMSIZ: 15
    host_ip, peer_ip = _free_slash30()
    made: list[tuple[str, ...]] = []  # the delete commands of what exists, newest last
    try:
        for create, delete in (
            (("netns", "add", name), ("netns", "del", name)),
            (("link", "add", host_if, "type", "veth", "peer", "name", peer_if), ("link", "del", host_if)),
        ):
            result = _ip(*create, check=False)
            if result.returncode != 0:
                raise NetnsUnavailable(f"ip {' '.join(create)}: {result.stderr.strip()}")
            made.append(delete)
        _ip("link", "set", peer_if, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{peer_ip}/30", "dev", peer_if)
        _ip("-n", name, "link", "set", peer_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield NetnsLink(name, host_ip, peer_ip)
    finally:
        for delete in reversed(made):
            if delete[0] == "link" and _ip("link", "show", host_if, check=False).returncode != 0:
                continue  # the veth moved or went with the namespace
            _ip(*delete, check=False)
