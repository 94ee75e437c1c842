"""The benchmark's new-connection client: a full handshake per request, never a resumed one."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import trustme

from bench.tls import handshakes
from bench.tls.files import write_tls_files


class Answer(asyncio.Protocol):
    """Answers the first request with ``status`` and closes, like a proxy after ``Connection: close``."""

    def __init__(self, status: bytes, sessions: list[bool]) -> None:
        self.status = status
        self.sessions = sessions

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.sessions.append(transport.get_extra_info("ssl_object").session_reused)

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(b"HTTP/1.1 " + self.status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            self.transport.close()


async def serve(status: bytes) -> tuple[asyncio.Server, list[bool]]:
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # session tickets on: a client could resume
    ca.issue_cert("127.0.0.1").configure_cert(context)
    sessions: list[bool] = []
    server = await asyncio.get_running_loop().create_server(lambda: Answer(status, sessions), "127.0.0.1", 0, ssl=context)
    return server, sessions


async def test_every_connection_is_a_full_handshake() -> None:
    server, sessions = await serve(b"200 OK")
    async with server:
        result = await handshakes.run("127.0.0.1", server.sockets[0].getsockname()[1], "/x", 4, 0.3)
    assert result["errors"] == 0 and result["requests"] >= 4
    assert len(sessions) >= result["requests"] and not any(sessions)
    assert 0 < result["p50_ms"] <= result["p99_ms"] and result["client_cpu_s"] > 0


async def test_a_status_other_than_200_is_an_error() -> None:
    server, _ = await serve(b"503 Service Unavailable")
    async with server:
        result = await handshakes.run("127.0.0.1", server.sockets[0].getsockname()[1], "/x", 2, 0.2)
    assert result["requests"] == 0 and result["errors"] > 0


def test_the_certificate_files_verify_for_127_0_0_1(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path / "tls", "max-age=1")
    assert files.key_pem.stat().st_mode & 0o077 == 0 and files.haproxy_pem.stat().st_mode & 0o077 == 0
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.cert_pem, files.key_pem)
    server.load_cert_chain(files.haproxy_pem)  # HAProxy's one-file form loads too
    client = files.client_context()
    client_in, client_out, server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(client_in, client_out, server_hostname="127.0.0.1")
    tls_server = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(4):
        for end in (tls_client, tls_server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
            server_in.write(client_out.read())
            client_in.write(server_out.read())
    assert tls_client.version() == "TLSv1.3"
