"""Certificates for the TLS tests: one PKI for the session (trustme), and the config tables that use it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.pki import Pair, Pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


def listener_tls(pair: Pair, **keys: Any) -> dict[str, Any]:
    """A ``[server.tls]`` / ``[admin.tls]`` table serving ``pair``."""
    return {"cert_file": pair.cert_file, "key_file": pair.key_file, **keys}
