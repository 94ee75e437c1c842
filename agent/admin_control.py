"""``sidecar-agent drain`` / ``undrain``: one ``POST /admin/drain|undrain`` to the local admin listener.

Without ``admin.token`` the admin listener takes changes only from loopback (SPEC §10), so this is
how an operator drains a pod by hand: ``kubectl exec POD -c agent -- sidecar-agent drain``. It runs
with the agent's own configuration (``-c``, ``$AGENT_CONFIG``, ``AGENT_*``), so it finds the
listener and sends the token when one is set. Standard library only, like ``probe``.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from agent.config import load_config
from agent.probe import local_base_url, local_connection

ACTIONS = ("drain", "undrain")


@dataclass(frozen=True, slots=True)
class ControlRequest:
    url: str
    token: str  # "" sends no Authorization header


def control_request(action: str, *, url: str | None, token: str | None, config_path: str | None) -> ControlRequest | None:
    """Where to POST and with which token; None when there is no admin listener to ask.

    Without ``url``: ``admin.listen`` (on 127.0.0.1 when it listens on every address), https with
    ``[admin.tls]``. A ``url`` without a path (or just "/") gets ``/admin/<action>``; any other is
    used as it is. ``token`` None means the configured one (``admin.token``, ``AGENT_ADMIN_TOKEN``,
    ``admin.token_env``). Raises :class:`~agent.config.ConfigError`."""
    config = load_config(config_path, os.environ)
    path = f"/admin/{action}"
    if not url:
        if not config.admin.enabled:
            return None
        url = local_base_url(config.admin.listen, is_tls=config.admin.tls.enabled) + path
    elif urlsplit(url).path in ("", "/"):
        url = urlunsplit(urlsplit(url)._replace(path=path))
    return ControlRequest(url, config.admin.token.reveal() if token is None else token)


def control(action: str, *, url: str | None, token: str | None, config_path: str | None, timeout_s: float) -> bool:
    """True when the agent answers 200; prints its drain state (stdout) or why not (stderr, one line).
    Raises :class:`~agent.config.ConfigError`."""
    request = control_request(action, url=url, token=token, config_path=config_path)
    if request is None:
        print(f"{action}: the admin listener is disabled (admin.enabled = false)", file=sys.stderr)
        return False
    parts = urlsplit(request.url)
    headers = {"User-Agent": "sidecar-agent-cli", "Accept": "application/json"}
    if request.token:
        headers["Authorization"] = f"Bearer {request.token}"
    try:
        conn = local_connection(parts.scheme, parts.hostname or "127.0.0.1", parts.port, timeout_s)
        conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=b"", headers=headers)
        response = conn.getresponse()
        body = response.read(64 * 1024).decode("utf-8", "replace").strip()
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        print(f"{action}: {request.url}: {exc}", file=sys.stderr)
        return False
    if response.status == 200:
        print(body)
        return True
    print(f"{action}: {response.status} {_reason(body)}", file=sys.stderr)
    return False


def _reason(body: str) -> str:
    """The agent's JSON error as ``CODE: message``; anything else, its first 200 characters."""
    try:
        error = json.loads(body)
        return f"{error['error_code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return body[:200]
