"""TLS for the listeners and to the app, with Python's ``ssl``; certificates reloaded without a restart.

A listener is handed one :class:`ReloadingContext` for its whole life. asyncio and uvloop make each
connection's TLS object through the context's ``wrap_bio``, which this shell passes on to the
context built from the files *now*: when the files change (their content, not their mtime: the
kubelet swaps a Secret's files with an atomic ``..data`` symlink change, cert-manager renews into
it), new handshakes use the new material and established connections keep theirs. A new pair that
does not load, does not match or has expired is refused: the old one stays in use, an ERROR line
says why, a metric counts it.

Handshake failures (a bad client certificate, a wrong version, plain HTTP or scanner garbage on the
TLS port) are counted by reason through the TLS object's class (``SSLContext.sslobject_class``):
the event loops report them nowhere else.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.schema import ClientTlsConfig, ListenerTlsConfig

log = logging.getLogger("agent.tls")

# OpenSSL reasons a server sees, folded into a bounded label set. Old clients get
# UNSUPPORTED_PROTOCOL; WRONG_VERSION_NUMBER means the first bytes were no TLS record at all (an SSH
# banner, random bytes, an HTTP method OpenSSL does not recognise): a scanner, so "other".
_REASONS = {
    "HTTP_REQUEST": "http_request",
    "HTTPS_PROXY_REQUEST": "http_request",
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "NO_PROTOCOLS_AVAILABLE": "protocol_version",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "client_certificate",
    "CERTIFICATE_VERIFY_FAILED": "client_certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "client_certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client_certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "client_certificate",
    "NO_SHARED_CIPHER": "cipher",
    "NO_APPLICATION_PROTOCOL": "alpn",
}
HANDSHAKE_REASONS = ("http_request", "protocol_version", "client_certificate", "cipher", "alpn", "other")
_LOG_EVERY_S = 1.0
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsError(Exception):
    """Certificate material that cannot be used; ``str()`` says why."""


class HandshakeStats:
    """Failed handshakes of one listener, by reason; logged at most once per second per reason."""

    def __init__(self, listener: str) -> None:
        self.listener = listener
        self.failures = dict.fromkeys(HANDSHAKE_REASONS, 0)
        self._logged: dict[str, float] = {}

    def failed(self, exc: ssl.SSLError) -> None:
        reason = _REASONS.get(exc.reason or "", "other")
        self.failures[reason] += 1
        now = time.monotonic()
        if now - self._logged.get(reason, 0.0) >= _LOG_EVERY_S:
            self._logged[reason] = now
            log.info("TLS handshake failed", extra={"listener": self.listener, "reason": reason, "detail": exc.reason})


def _counting_class(stats: HandshakeStats) -> type[ssl.SSLObject]:
    class CountingSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                stats.failed(exc)
                raise

    return CountingSSLObject


@dataclass(frozen=True, slots=True)
class Certificate:
    """What the agent tells about a served certificate."""

    serial: str
    not_after: float  # Unix time
    subject: str


def read_certificate(path: str) -> Certificate:
    """The leaf of a PEM chain: serial, expiry, subject."""
    try:
        decoded: dict[str, Any] = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{path}: cannot read the certificate: {exc}") from None
    return Certificate(
        serial=str(decoded.get("serialNumber", "")),
        not_after=ssl.cert_time_to_seconds(decoded["notAfter"]),
        subject=subject_text(decoded.get("subject", ())),
    )


def subject_text(subject: Any) -> str:
    """``getpeercert()``'s subject as RFC 4514 text, most specific first (``CN=a,O=b``), as Envoy shows it."""
    rdns = ["+".join(f"{_SHORT.get(key, key)}={_escaped(value)}" for key, value in rdn) for rdn in subject]
    return ",".join(reversed(rdns))


def _escaped(value: str) -> str:
    """RFC 4514 §2.4: ``O=Acme\\, Inc.``, so that a value cannot pass for another attribute."""
    text = "".join("\\" + char if char in '\\"+,;<>' else char for char in value)
    if text[:1] in ("#", " "):
        text = "\\" + text
    if text.endswith(" ") and not text.endswith("\\ "):
        text = text[:-1] + "\\ "
    return text


_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
}


def server_context(config: ListenerTlsConfig, stats: HandshakeStats | None = None) -> ssl.SSLContext:
    """A server context from the files as they are now; :class:`TlsError` when they cannot serve."""
    certificate = read_certificate(config.cert_file)
    if certificate.not_after < time.time():
        raise TlsError(
            f"{config.cert_file}: certificate expired on {time.strftime('%Y-%m-%d', time.gmtime(certificate.not_after))}"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[config.min_version]
    try:
        ctx.load_cert_chain(config.cert_file, config.key_file, password=_refuse_passphrase)
        if config.client_verification:
            ctx.load_verify_locations(config.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{config.cert_file} / {config.key_file}: {exc}") from None
    if config.client_verification:
        ctx.verify_mode = ssl.CERT_REQUIRED if config.client_verification == "require" else ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])  # HTTP/2 is not served
    if stats is not None:
        ctx.sslobject_class = _counting_class(stats)
    return ctx


def _refuse_passphrase() -> str:
    # Without a callback OpenSSL asks for it on the process's terminal, blocking the event loop.
    raise TlsError("the private key is encrypted (a key with a passphrase is not supported)")


def client_context(config: ClientTlsConfig) -> ssl.SSLContext:
    """A client context for the app (or a check): verified against ``ca_file`` or the system store."""
    ctx = ssl.create_default_context(cafile=config.ca_file or None)
    if not config.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.cert_file:
        ctx.load_cert_chain(config.cert_file, config.key_file or None)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class ReloadingContext(ssl.SSLContext):
    """The context a listener holds: each new connection's TLS object comes from ``current``."""

    current: ssl.SSLContext

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        return self.current.wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self.current.wrap_socket(*args, **kwargs)


def _fingerprint(paths: list[str]) -> bytes:
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(Path(path).read_bytes())  # follows the kubelet's symlinks to the current files
        except OSError as exc:
            digest.update(f"unreadable: {exc}".encode())
        digest.update(b"\0")
    return digest.digest()


class TlsListener:
    """One TLS listener's certificate material, reloaded when its files change."""

    def __init__(self, name: str, config: ListenerTlsConfig, *, now: Callable[[], float] = time.time) -> None:
        self.name = name
        self.config = config
        self.stats = HandshakeStats(name)
        self.reloads = 0
        self.reload_failures = 0
        self._paths = [p for p in (config.cert_file, config.key_file, config.client_ca_file) if p]
        self._fingerprint = _fingerprint(self._paths)
        self.context = ReloadingContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.current = server_context(config, self.stats)
        self.certificate = read_certificate(config.cert_file)

    def reload(self, *, force: bool = False) -> bool:
        """Load the files again if their content changed (or ``force``); True when new material is served."""
        fingerprint = _fingerprint(self._paths)
        if fingerprint == self._fingerprint and not force:
            return False
        self._fingerprint = fingerprint
        try:
            context = server_context(self.config, self.stats)
            certificate = read_certificate(self.config.cert_file)
        except TlsError as exc:
            self.reload_failures += 1
            log.error("certificate reload refused: keeping the one in use", extra={"listener": self.name, "reason": str(exc)})
            return False
        self.context.current, self.certificate = context, certificate
        self.reloads += 1
        log.info(
            "certificate reloaded",
            extra={
                "listener": self.name,
                "serial": certificate.serial,
                "not_after": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(certificate.not_after)),
            },
        )
        return True


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A client's verified certificate: its subject, and Envoy's ``X-Forwarded-Client-Cert`` value."""

    subject: str
    forwarded: str  # Hash=<sha256 of the DER>;Subject="...";URI=...;DNS=...


def client_certificate(ssl_object: ssl.SSLObject | None) -> ClientCertificate | None:
    """The peer's certificate when the handshake verified one (``getpeercert()`` is empty otherwise)."""
    if ssl_object is None:
        return None
    info = ssl_object.getpeercert()
    der = ssl_object.getpeercert(binary_form=True)
    if not info or not der:
        return None
    subject = subject_text(info.get("subject", ()))
    sans: Any = info.get("subjectAltName", ())
    parts = [f"Hash={hashlib.sha256(der).hexdigest()}", 'Subject="' + subject.replace("\\", "\\\\").replace('"', '\\"') + '"']
    parts += [f"URI={value}" for kind, value in sans if kind == "URI"]
    parts += [f"DNS={value}" for kind, value in sans if kind == "DNS"]
    return ClientCertificate(subject, ";".join(parts))
