"""``sidecar-agent probe``: one HTTP GET to a running agent, for Docker HEALTHCHECK (no curl).

Uses only the standard library so the probe process starts fast and small.
"""

from __future__ import annotations

import http.client
import os
import sys
from urllib.parse import urlsplit

from agent.config import ConfigError, load_config, parse_listen


def default_url(kind: str, config_path: str | None) -> str:
    config = load_config(config_path, os.environ)
    host, port = parse_listen(config.server.listen)
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{config.health.path_prefix}/{kind}"


def probe(kind: str, *, url: str | None, config_path: str | None, timeout_s: float) -> bool:
    """True when the endpoint answers 200; prints one line saying what happened."""
    try:
        target = url or default_url(kind, config_path)
    except ConfigError as exc:
        print(f"probe {kind}: invalid configuration: {exc}", file=sys.stderr)
        return False
    parts = urlsplit(target)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    try:
        conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
        conn.request("GET", parts.path or "/", headers={"User-Agent": "sidecar-agent-probe"})
        response = conn.getresponse()
        body = response.read(1024).decode("utf-8", "replace")
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        print(f"probe {kind}: {target}: {exc}", file=sys.stderr)
        return False
    print(f"probe {kind}: {response.status} {body.strip()}")
    return response.status == 200
