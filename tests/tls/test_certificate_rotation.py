"""Certificates rotated under a running agent, the way Kubernetes does it.

The agent reads ``tls.crt``/``tls.key`` from a directory laid out as the kubelet mounts a Secret
(each file a symlink into ``..data``, itself a symlink to a timestamped directory); a rotation
writes a new timestamped directory and replaces ``..data`` in one rename. New handshakes must see
the new certificate within ``reload_interval_s`` (or at once on SIGHUP) while established
connections keep theirs; a broken rotation must leave the old certificate in use, say why at
ERROR and count it.
"""

from __future__ import annotations

import datetime
import fcntl
import http.client
import os
import signal
import ssl
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from tests.support.agent import AgentProcess, proxy_config
from tests.support.pki import MountedSecret, Pair, Pki
from tests.support.polling import wait_until
from tests.support.reports import metric, records, wait_for_log
from tests.support.tls_peer import served_serial
from tests.support.upstream import UpstreamProcess

RELOAD_INTERVAL_S = 0.5
EXPIRED = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


def secret_files(cert: Pair, key: Pair | None = None) -> dict[str, str]:
    return {"tls.crt": cert.cert_file, "tls.key": (key or cert).key_file}


def start(
    agent_factory: Callable[..., AgentProcess], upstream: UpstreamProcess, pki: Pki, secret: MountedSecret, interval_s: float
) -> AgentProcess:
    tls = {"cert_file": secret.path("tls.crt"), "key_file": secret.path("tls.key"), "reload_interval_s": interval_s}
    return agent_factory(proxy_config(upstream.url, server={"tls": tls}), tls=pki.client_context())


def tls_metric(agent: AgentProcess, name: str) -> float | None:
    return metric(agent, name, listener="main")


def not_after(pair: Pair) -> float:
    return pair.leaf.not_valid_after_utc.timestamp()


def peer_serial(conn: http.client.HTTPSConnection) -> int:
    assert isinstance(conn.sock, ssl.SSLSocket)
    der = conn.sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def get(conn: http.client.HTTPSConnection, path: str) -> int:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


def reload_lines(agent: AgentProcess, **fields: Any) -> list[dict[str, Any]]:
    return records(agent, "certificate reloaded", listener="main", **fields)


def test_a_symlink_swap_reaches_new_handshakes_and_open_connections_keep_theirs(
    tmp_path: Path, pki: Pki, upstream: UpstreamProcess, agent_factory: Callable[..., AgentProcess]
) -> None:
    first, second = pki.issue(tmp_path, "first"), pki.issue(tmp_path, "second")
    secret = MountedSecret(tmp_path / "secret", secret_files(first))
    agent = start(agent_factory, upstream, pki, secret, RELOAD_INTERVAL_S)
    context = pki.client_context()
    assert tls_metric(agent, "agent_tls_certificate_expiry_timestamp_seconds") == not_after(first)

    kept = http.client.HTTPSConnection("127.0.0.1", agent.port, timeout=5, context=context)
    try:
        assert get(kept, "/echo") == 200 and peer_serial(kept) == first.serial
        swapped = time.monotonic()
        secret.update(secret_files(second))
        assert wait_until(lambda: served_serial(agent.port, context) == second.serial, timeout=5, interval=0.02)
        took_s = time.monotonic() - swapped
        assert took_s < RELOAD_INTERVAL_S + 1.0, took_s
        print(f"new certificate served {took_s:.2f} s after the ..data swap")

        # The connection opened before the swap goes on with the certificate it was given.
        assert get(kept, "/echo") == 200 and peer_serial(kept) == first.serial
    finally:
        kept.close()

    assert tls_metric(agent, "agent_tls_certificate_expiry_timestamp_seconds") == not_after(second)
    assert tls_metric(agent, "agent_tls_reloads_total") == 1
    assert tls_metric(agent, "agent_tls_reload_failures_total") == 0
    (line,) = reload_lines(agent)
    assert int(line["serial"], 16) == second.serial and line["level"] == "INFO"


def test_sighup_reloads_at_once(
    tmp_path: Path, pki: Pki, upstream: UpstreamProcess, agent_factory: Callable[..., AgentProcess]
) -> None:
    first, second = pki.issue(tmp_path, "first"), pki.issue(tmp_path, "second")
    secret = MountedSecret(tmp_path / "secret", secret_files(first))
    agent = start(agent_factory, upstream, pki, secret, 3600.0)
    context = pki.client_context()
    secret.update(secret_files(second))
    time.sleep(2 * RELOAD_INTERVAL_S)
    assert served_serial(agent.port, context) == first.serial  # not checked again for an hour

    signalled = time.monotonic()
    agent.send_signal(signal.SIGHUP)
    assert wait_until(lambda: served_serial(agent.port, context) == second.serial, timeout=3, interval=0.02)
    print(f"new certificate served {time.monotonic() - signalled:.2f} s after SIGHUP")
    assert tls_metric(agent, "agent_tls_reloads_total") == 1
    assert tls_metric(agent, "agent_tls_certificate_expiry_timestamp_seconds") == not_after(second)
    assert records(agent, "SIGHUP: reloading certificates")
    assert agent.process is not None and agent.process.poll() is None  # SIGHUP does not stop the agent


def test_a_broken_rotation_keeps_the_certificate_in_use(
    tmp_path: Path, pki: Pki, upstream: UpstreamProcess, agent_factory: Callable[..., AgentProcess]
) -> None:
    first, second, third = (pki.issue(tmp_path, name) for name in ("first", "second", "third"))
    expired = pki.issue(tmp_path, "expired", not_after=EXPIRED)
    secret = MountedSecret(tmp_path / "secret", secret_files(first))
    agent = start(agent_factory, upstream, pki, secret, RELOAD_INTERVAL_S)
    context = pki.client_context()

    def refused(count: int, why: str) -> None:
        assert wait_until(lambda: tls_metric(agent, "agent_tls_reload_failures_total") == count, timeout=5), why
        lines = wait_for_log(agent, lambda r: r.get("message") == "certificate reload refused: keeping the one in use")
        assert len(lines) == count and lines[-1]["level"] == "ERROR" and lines[-1]["listener"] == "main", lines
        assert why in lines[-1]["reason"], lines[-1]
        assert served_serial(agent.port, context) == first.serial
        assert tls_metric(agent, "agent_tls_certificate_expiry_timestamp_seconds") == not_after(first)
        assert agent.get("/health/ready").status == 200

    secret.update(secret_files(second, key=first))  # a certificate with another pair's key
    refused(1, "KEY_VALUES_MISMATCH")
    secret.update(secret_files(expired))
    refused(2, "certificate expired on 2020-01-01")

    secret.update(secret_files(third))  # a good one after the bad ones is served
    assert wait_until(lambda: served_serial(agent.port, context) == third.serial, timeout=5, interval=0.02)
    assert tls_metric(agent, "agent_tls_certificate_expiry_timestamp_seconds") == not_after(third)
    assert tls_metric(agent, "agent_tls_reloads_total") == 1
    assert tls_metric(agent, "agent_tls_reload_failures_total") == 2


class AgentOnATerminal(AgentProcess):
    """The agent started from a terminal (``docker run -it``, a shell): it has a controlling tty,
    which is where OpenSSL asks for a key's passphrase when nobody gave it a way to."""

    def start(self, *, wait: bool = True, timeout: float = 15.0) -> AgentProcess:
        self.terminal, tty = os.openpty()

        def take_the_terminal() -> None:  # in the child, after setsid(): the pty becomes its tty
            fcntl.ioctl(tty, termios.TIOCSCTTY, 0)

        with self.stdout_path.open("ab") as stdout, self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "-c", str(self.config_path)],
                cwd=self.workdir,
                env=self.env,
                stdin=tty,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=take_the_terminal,  # no thread of this test process runs meanwhile
                pass_fds=(tty,),
            )
        os.close(tty)
        if wait:
            self.wait_listening(timeout)
        return self

    def shown(self) -> bytes:
        """What the agent wrote to its terminal so far."""
        os.set_blocking(self.terminal, False)
        try:
            return os.read(self.terminal, 4096)
        except OSError:
            return b""

    def stop(self) -> None:
        super().stop()
        os.close(self.terminal)


def test_an_encrypted_key_rotated_in_is_refused_without_asking_for_a_passphrase(
    tmp_path: Path, pki: Pki, upstream: UpstreamProcess
) -> None:
    first, second = pki.issue(tmp_path, "first"), pki.issue(tmp_path, "second")
    encrypted = tmp_path / "second-encrypted.key"
    key = load_pem_private_key(Path(second.key_file).read_bytes(), None)
    encrypted.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")))
    secret = MountedSecret(tmp_path / "secret", secret_files(first))
    tls = {"cert_file": secret.path("tls.crt"), "key_file": secret.path("tls.key"), "reload_interval_s": RELOAD_INTERVAL_S}
    agent = AgentOnATerminal(tmp_path / "agent", proxy_config(upstream.url, server={"tls": tls}), tls=pki.client_context())
    try:
        agent.start()
        secret.update({"tls.crt": second.cert_file, "tls.key": str(encrypted)})

        def refused() -> bool:
            try:
                return tls_metric(agent, "agent_tls_reload_failures_total") == 1
            except OSError:  # TimeoutError: the event loop is stuck
                return False

        assert wait_until(refused, timeout=5), f"terminal: {agent.shown()!r}"
        assert agent.shown() == b""  # nobody was asked for a passphrase
        (line,) = records(agent, "certificate reload refused: keeping the one in use")
        assert "encrypted" in line["reason"], line
        assert agent.get("/health/live").status == 200
        assert served_serial(agent.port, pki.client_context()) == first.serial
    finally:
        agent.stop()
