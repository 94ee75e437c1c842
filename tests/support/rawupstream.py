"""A raw asyncio HTTP/1.1 upstream for tests, misbehaving on purpose: each route's handler writes
whatever bytes it likes (truncated bodies, malformed heads, stray bytes) and says whether the
connection stays open; the server records the requests and connections it saw."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Handler = Callable[["RawConnection", "RawRequest"], Awaitable[bool]]


@dataclass
class RawRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class RawConnection:
    def __init__(self, server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.id = next(server._ids)
        self.requests = 0
        self.armed = False  # set by a handler: the next request on this connection is dropped unanswered

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


class RawUpstream:
    """A raw asyncio HTTP/1.1 server in its own thread; ``routes[path](conn, req)`` answers and
    returns True to keep the connection for another request. Records what it saw."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[int, RawRequest]] = []  # (connection id, request)
        self.connections_opened = 0
        self.connections_closed: list[tuple[int, str]] = []  # (connection id, "eof" | "reset")
        self.events: list[str] = []
        self._ids = itertools.count(1)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-upstream", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RawUpstream:
        self._thread.start()
        self._ready.wait(5)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            self._stop = asyncio.Event()
            await self._stop.wait()
            self._server.close()
            await self._server.wait_closed()

        self.loop.run_until_complete(main())
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)

    def requests_to(self, path: str) -> list[tuple[int, RawRequest]]:
        return [(c, r) for c, r in self.requests if r.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_opened += 1
        conn = RawConnection(self, reader, writer)
        how = "eof"
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
                req = RawRequest(method, path, headers, b"")  # type: ignore[arg-type]
                length = req.header("Content-Length")
                if length is not None:
                    req.body = await reader.readexactly(int(length))
                elif "chunked" in (req.header("Transfer-Encoding") or ""):
                    body = bytearray()
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        if size == 0:
                            await reader.readuntil(b"\r\n")
                            break
                        body += await reader.readexactly(size + 2)
                        del body[-2:]
                    req.body = bytes(body)
                conn.requests += 1
                self.requests.append((conn.id, req))
                if conn.armed:  # like an app closing an idle keep-alive connection as a request arrives
                    self.events.append(f"dropped {req.method} {req.path}")
                    break
                handler = self.routes.get(path.split("?")[0], _ok)
                if not await handler(conn, req):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            how = "reset"
        finally:
            self.connections_closed.append((conn.id, how))
            if not writer.is_closing():
                writer.close()


async def _ok(conn: RawConnection, req: RawRequest) -> bool:
    body = b'{"ok": true}'
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return True
