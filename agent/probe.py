"""``sidecar-agent probe``: one HTTP GET to a running agent, for Docker HEALTHCHECK (no curl).

Uses only the standard library so the probe process starts fast and small.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys
from urllib.parse import urlsplit, urlunsplit

from agent.config import AgentConfig, ConfigError, load_config, parse_listen


def endpoint_path(kind: str, config: AgentConfig) -> str:
    """``/health/live``: the kind's endpoint under ``health.path_prefix``."""
    return f"{config.health.path_prefix}/{kind}"


def local_base_url(listen: str, *, is_tls: bool) -> str:
    """``http://127.0.0.1:8000`` for ``listen = "0.0.0.0:8000"``: a listener on every address is
    asked on loopback (``[::1]`` for ``::``), any other as it is; https when it serves TLS."""
    host, port = parse_listen(listen)
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if is_tls else 'http'}://{host}:{port}"


def default_url(kind: str, config_path: str | None) -> str:
    config = load_config(config_path, os.environ)
    return local_base_url(config.server.listen, is_tls=config.server.tls.enabled) + endpoint_path(kind, config)


def probe_url(kind: str, url: str | None, config_path: str | None) -> str:
    """What to ask: without ``url``, the main listener from the config; a ``url`` without a path
    (or with just "/"), the kind's endpoint on that server (``http://127.0.0.1:8000`` ->
    ``http://127.0.0.1:8000/health/live``); any other ``url`` as it is."""
    if not url:
        return default_url(kind, config_path)
    parts = urlsplit(url)
    if parts.path not in ("", "/"):
        return url
    config = load_config(config_path, os.environ)
    return urlunsplit(parts._replace(path=endpoint_path(kind, config)))


def probe(kind: str, *, url: str | None, config_path: str | None, timeout_s: float) -> bool:
    """True when the endpoint answers 200; prints one line saying what happened."""
    try:
        target = probe_url(kind, url, config_path)
    except ConfigError as exc:
        print(f"probe {kind}: invalid configuration: {exc}", file=sys.stderr)
        return False
    parts = urlsplit(target)
    request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn = local_connection(parts.scheme, parts.hostname or "127.0.0.1", parts.port, timeout_s)
        conn.request("GET", request_target, headers={"User-Agent": "sidecar-agent-probe"})
        response = conn.getresponse()
        body = response.read(1024).decode("utf-8", "replace")
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        print(f"probe {kind}: {target}: {exc}", file=sys.stderr)
        return False
    print(f"probe {kind}: {response.status} {body.strip()}")
    return response.status == 200


def local_connection(scheme: str, host: str, port: int | None, timeout_s: float) -> http.client.HTTPConnection:
    """Like the kubelet's HTTPS probes, the local probe (and ``drain``) does not verify the
    certificate: it asks this agent on this machine, not who it is."""
    if scheme != "https":
        return http.client.HTTPConnection(host, port, timeout=timeout_s)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
