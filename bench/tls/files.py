"""The one certificate both TLS proxies serve, written once per benchmark run.

A trustme CA issues an ECDSA P-256 leaf for ``127.0.0.1`` and ``localhost`` (trustme's default
key type, and what most ACME set-ups issue today; cert-manager's default is RSA 2048, whose
signature costs the server more per full handshake, on both proxies alike). The agent reads the
chain and the key from two files; HAProxy wants one PEM with the key and the chain.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

KEY_TYPE = "ECDSA P-256"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert_pem: Path  # the chain, leaf first
    key_pem: Path
    haproxy_pem: Path  # key + chain
    ca_pem: Path
    leaf_sha256: str  # of the leaf's DER: what a pre-check expects every TLS proxy to present
    hsts_value: str  # the agent's Strict-Transport-Security value, which HAProxy sends too

    def client_context(self) -> ssl.SSLContext:
        """A verifying client: the CA above, the certificate's name checked (127.0.0.1 is in it)."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        context.set_alpn_protocols(["http/1.1"])
        return context


def write_tls_files(directory: Path, hsts_value: str) -> TlsFiles:
    directory.mkdir(mode=0o700)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    files = TlsFiles(
        cert_pem=directory / "cert.pem",
        key_pem=directory / "key.pem",
        haproxy_pem=directory / "haproxy.pem",
        ca_pem=directory / "ca.pem",
        leaf_sha256=hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())).hexdigest(),
        hsts_value=hsts_value,
    )
    files.cert_pem.write_bytes(chain)
    files.ca_pem.write_bytes(ca.cert_pem.bytes())
    for path, data in ((files.key_pem, key), (files.haproxy_pem, key + chain)):
        path.touch(mode=0o600)  # the agent warns about a key readable by group/others
        path.write_bytes(data)
    return files
