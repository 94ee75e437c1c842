"""Helpers the tests share, one concept a module: real processes (``agent``, ``upstream``,
``postgres``, ``prometheus``, ``browser``, ``haproxy``, ``https_app``), faults (``faultproxy``,
``pg_faults``, ``rawupstream``), raw HTTP (``rawhttp``, ``responses``), TLS (``pki``: certificates
and a kubelet-mounted Secret; ``tls_peer``: a client's view of a handshake), what an agent reports
(``reports``), the agent inside the test's loop (``inprocess``), shipped artefacts (``chart``,
``dockerfile``, ``console_script``, ``promql``), and ``polling``, ``memory``, ``net``."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
