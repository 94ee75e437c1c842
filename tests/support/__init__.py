"""Helpers the tests share, one concept a module: real processes (``agent``, ``upstream``,
``postgres``, ``prometheus``, ``browser``, ``haproxy``, ``https_app``), faults (``faultproxy``,
``pg_faults``, ``rawupstream``), raw HTTP (``rawhttp``, ``responses``), TLS (``pki``: certificates
and a kubelet-mounted Secret; ``tls_peer``: a client's view of a handshake), what an agent reports
(``reports``), the agent inside the test's loop (``inprocess``), shipped artefacts (``chart``,
``dockerfile``, ``console_script``, ``promql``), and ``polling``, ``memory``, ``net``."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def environ_without_agent_config(*, keep_database_url: bool = False) -> dict[str, str]:
    """This process's environment without ``AGENT_*`` config overrides (and ``DATABASE_URL``), for
    an agent a test starts; ``AGENT_PURE_PYTHON`` stays, so the suite's pure-Python pass reaches
    the agents it starts as processes too."""
    from agent.compiled import PURE_ENV

    return {
        k: v
        for k, v in os.environ.items()
        if (k == PURE_ENV or not k.startswith("AGENT_")) and (keep_database_url or k != "DATABASE_URL")
    }
