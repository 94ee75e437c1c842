"""Helpers the tests share, one concept a module: real processes (``agent``, ``upstream``,
``postgres``, ``prometheus``, ``browser``), faults (``faultproxy``, ``pg_faults``,
``rawupstream``), raw HTTP (``rawhttp``, ``responses``), what an agent reports (``reports``), the
agent inside the test's loop (``inprocess``), shipped artefacts (``chart``, ``dockerfile``,
``console_script``, ``promql``), and ``polling``, ``memory``, ``net``."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
