"""A real WebSocket server for tests (aiohttp): the app behind the agent when a test needs one.

Every WebSocket route takes ``?id=NAME``; the app keeps what it saw of that connection as a
:class:`Session` (the handshake's headers, messages, the close code the client sent) under
``app[SESSIONS][NAME]``, and as JSON at ``GET /sessions/NAME`` for tests that only have HTTP (a
browser page, a subprocess). ``await wait_session(app, NAME)`` waits until the connection ended.

* ``GET /ws``           echo: text as text, binary as binary. ``?close=CODE``: after echoing the
                        first message the app closes with CODE. The text ``ping:DATA`` makes the
                        app ping the client with DATA and answer ``pong:DATA`` once the pong is
                        back; pings from the client are answered (and counted) by the app itself.
                        On every route ``?greet=TEXT`` sends TEXT right after the 101.
* ``GET /ws/push``      ``?after_s=S``: the app says nothing for S seconds, then sends ``push``
                        (and echoes from then on).
* ``GET /ws/sha256``    each binary message is answered with its SHA-256 (hex, as text).
* ``GET /ws/sequence``  text messages must be ``0``, ``1``, ``2``, ...; each is echoed, and the
                        session's ``in_order`` turns False at the first one out of place.
* ``GET /ws/refuse``    no upgrade: 403 with a JSON body.

Large messages are allowed (``MAX_MESSAGE_BYTES``) and nothing is compressed by the app unless
the client offers ``permessage-deflate``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass
class Session:
    """What the app saw of one WebSocket connection."""

    id: str
    path: str
    headers: list[tuple[str, str]]  # the handshake request's fields, as the app received them
    messages: int = 0  # data messages received (text or binary)
    pings: list[bytes] = field(default_factory=list)  # payloads of the client's pings
    in_order: bool = True  # /ws/sequence: every message was the next number
    close_code: int | None = None  # the code of the client's Close frame (its own or its answer); None: none came
    ended: bool = False  # the connection ended and the app's handler returned

    def header(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "headers": self.headers,
            "messages": self.messages,
            "pings": [p.decode("latin-1") for p in self.pings],
            "in_order": self.in_order,
            "close_code": self.close_code,
            "ended": self.ended,
        }


SESSIONS = web.AppKey("sessions", dict[str, Session])
_IDS = web.AppKey("ids", itertools.count)
_ENDED = web.AppKey("ended", asyncio.Condition)  # notified whenever a session ends


async def wait_session(app: web.Application, session_id: str, timeout_s: float = 5.0) -> Session:
    """The session ``session_id`` once its connection ended (the app's handler returned)."""
    sessions, ended = app[SESSIONS], app[_ENDED]
    async with asyncio.timeout(timeout_s), ended:
        await ended.wait_for(lambda: session_id in sessions and sessions[session_id].ended)
    return sessions[session_id]


async def _handle(request: web.Request) -> web.StreamResponse:
    kind = request.match_info.get("kind", "")
    if kind not in ("", "push", "sha256", "sequence"):
        raise web.HTTPNotFound()
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=False)
    await ws.prepare(request)
    session_id = request.query.get("id") or f"session-{next(request.app[_IDS])}"
    session = Session(
        session_id,
        request.path,
        [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers],
    )
    request.app[SESSIONS][session_id] = session
    try:
        if "greet" in request.query:  # right behind the 101, often in the same TCP segment
            await ws.send_str(request.query["greet"])
        if kind == "push":
            await asyncio.sleep(float(request.query.get("after_s", "1")))
            await ws.send_str("push")
        close_code = int(request.query["close"]) if "close" in request.query else None
        await _serve(ws, session, kind, close_code)
        # 1006 is never sent (RFC 6455 §7.4.1): aiohttp's mark for a connection that ended without one.
        session.close_code = None if ws.close_code == 1006 else ws.close_code
    finally:
        session.ended = True
        ended = request.app[_ENDED]
        async with ended:
            ended.notify_all()
    return ws


async def _serve(ws: web.WebSocketResponse, session: Session, kind: str, close_code: int | None) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.PING:
            session.pings.append(msg.data)
            await ws.pong(msg.data)
            continue
        if msg.type is WSMsgType.PONG:
            await ws.send_str("pong:" + msg.data.decode("latin-1"))
            continue
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            continue
        session.messages += 1
        if msg.type is WSMsgType.TEXT:
            if kind == "sequence" and msg.data != str(session.messages - 1):
                session.in_order = False
            if msg.data.startswith("ping:"):
                await ws.ping(msg.data[5:].encode("latin-1"))
                continue
            await ws.send_str(msg.data)
        elif kind == "sha256":
            await ws.send_str(hashlib.sha256(msg.data).hexdigest())
        else:
            await ws.send_bytes(msg.data)
        if close_code is not None:
            await ws.close(code=close_code, message=b"the app closes")
            return


async def _refuse(request: web.Request) -> web.Response:
    return web.json_response({"error": "forbidden", "reason": "upgrade refused"}, status=403)


async def _session(request: web.Request) -> web.Response:
    session = request.app[SESSIONS].get(request.match_info["id"])
    if session is None:
        raise web.HTTPNotFound()
    return web.json_response(session.as_json())


def make_websocket_app() -> web.Application:
    app = web.Application()
    app[SESSIONS] = {}
    app[_IDS] = itertools.count(1)
    app[_ENDED] = asyncio.Condition()
    app.router.add_get("/ws/refuse", _refuse)
    app.router.add_get("/ws", _handle)
    app.router.add_get("/ws/{kind}", _handle)
    app.router.add_get("/sessions/{id}", _session)
    return app
