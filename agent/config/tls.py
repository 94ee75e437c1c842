"""``[*.tls]`` tables: the key combinations a field validator cannot see, and the files they name.

``validate_listener_tls`` / ``validate_client_tls`` are pure. ``check_tls_files`` opens the
certificate, key and CA files the way the runtime will (``ssl.SSLContext.load_cert_chain``,
``load_verify_locations``) so that a missing, unreadable, mismatched or expired file stops the
agent at start (exit 2) rather than at its first handshake; only the loader calls it. Each
raises a :class:`ConfigError` naming the full key (``server.tls.key_file: does not match
server.tls.cert_file``).
"""

from __future__ import annotations

import _ssl
import re
import ssl
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from agent.config.errors import ConfigError
from agent.config.schema import ClientTlsConfig, ListenerTlsConfig

# The stdlib's own PEM certificate decoder (what ssl.get_server_certificate's tests use); it
# reads the first certificate of the file: the leaf, in a chain written leaf first.
_decode_cert = cast(Callable[[str], dict[str, Any]], _ssl._test_decode_cert)  # type: ignore[attr-defined]
_PRIVATE_KEY_PEM = re.compile(rb"-----BEGIN ([A-Z]+ )?PRIVATE KEY-----")


class _PassphraseAsked(Exception):
    """Raised from the password callback: OpenSSL would otherwise prompt on the terminal."""


def validate_listener_tls(tls: ListenerTlsConfig, prefix: str) -> None:
    """``[server.tls]`` / ``[admin.tls]`` key combinations (no files read)."""
    if tls.client_auth and not tls.client_ca_file:
        raise ConfigError(f"{prefix}.client_auth", "needs client_ca_file (client certificates are verified against it)")
    if not tls.cert_file:
        for name in ("key_file", "client_ca_file"):
            if getattr(tls, name):
                raise ConfigError(f"{prefix}.cert_file", f"is required when {name} is set (empty cert_file = plain HTTP)")
    elif not tls.key_file:
        raise ConfigError(f"{prefix}.key_file", "is required when cert_file is set")


def validate_client_tls(tls: ClientTlsConfig, prefix: str) -> None:
    """``[upstream.tls]`` / ``[checks.NAME.tls]`` key combinations (no files read)."""
    if tls.cert_file and not tls.key_file:
        raise ConfigError(f"{prefix}.key_file", "is required when cert_file is set (a client certificate needs its key)")
    if tls.key_file and not tls.cert_file:
        raise ConfigError(f"{prefix}.cert_file", "is required when key_file is set")


def check_tls_files(tls: ListenerTlsConfig | ClientTlsConfig, prefix: str, *, now_s: float | None = None) -> None:
    """Every file the table names loads: the CA bundle, and the certificate with its key.

    A certificate whose notAfter is before ``now_s`` (default: now) is refused; one not valid
    *yet* is accepted (cert-manager issues certificates valid from the second they are made, and
    a clock a little behind must not stop a restart).
    """
    if isinstance(tls, ListenerTlsConfig):
        ca_key, ca_file = f"{prefix}.client_ca_file", tls.client_ca_file
    else:
        ca_key, ca_file = f"{prefix}.ca_file", tls.ca_file
    if tls.cert_file:
        _check_pair(tls.cert_file, tls.key_file, prefix, time.time() if now_s is None else now_s)
    if ca_file:
        _check_ca(ca_file, ca_key)


def _check_pair(cert_file: str, key_file: str, prefix: str, now_s: float) -> None:
    cert_key, key_key = f"{prefix}.cert_file", f"{prefix}.key_file"
    _read_file(cert_file, cert_key)
    not_after = _not_after(cert_file, cert_key)
    if not_after < now_s:
        expired = datetime.fromtimestamp(not_after, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise ConfigError(cert_key, f"expired on {expired} ({cert_file!r})")
    key_pem = _read_file(key_file, key_key)
    match = _PRIVATE_KEY_PEM.search(key_pem)
    if match is None:
        raise ConfigError(key_key, f"no PEM private key in {key_file!r}")
    if match.group(1) == b"ENCRYPTED ":
        raise ConfigError(key_key, f"is encrypted, and a key with a passphrase is not supported ({key_file!r})")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file, password=_refuse_passphrase)
    except _PassphraseAsked:
        raise ConfigError(key_key, f"is encrypted, and a key with a passphrase is not supported ({key_file!r})") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(key_key, f"does not match {cert_key} ({key_file!r} is not the key of {cert_file!r})") from None
        raise ConfigError(key_key, f"cannot be loaded with {cert_key}: {exc.reason or exc}") from None


def _refuse_passphrase() -> str:
    raise _PassphraseAsked


def _not_after(cert_file: str, key: str) -> float:
    """The leaf's notAfter, in seconds since the epoch."""
    try:
        return ssl.cert_time_to_seconds(_decode_cert(cert_file)["notAfter"])
    except (ssl.SSLError, KeyError, ValueError):
        raise ConfigError(key, f"not a PEM certificate: {cert_file!r}") from None


def _check_ca(ca_file: str, key: str) -> None:
    _read_file(ca_file, key)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise ConfigError(key, f"no CA certificate could be loaded from {ca_file!r}: {exc.reason or exc}") from None


def _read_file(path: str, key: str) -> bytes:
    """The bytes of a regular, readable file (a FIFO or a device would block the start)."""
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):
            raise ConfigError(key, f"not a regular file: {path!r}")
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc.strerror or exc}") from None
    except ValueError:  # an embedded NUL
        raise ConfigError(key, f"not a usable path: {path!r}") from None
