"""Upgraded connections (WebSocket): after the app's 101, bytes both ways until either side is done.

No HTTP parsing and no buffering beyond each transport's write buffer: when one side's buffer
passes its high-water mark, reading from the other side pauses (asyncio flow control), so a slow
reader holds the sender back instead of growing memory. A FIN from one side is passed on, and the
tunnel ends when both sides are done, either side resets, or it was idle both ways for
``proxy.upgrade_idle_timeout_s``. Header, body and keep-alive deadlines no longer apply.

For WebSocket tunnels the agent follows frame boundaries (RFC 6455 §5.2: just the headers, never
payloads), so that at shutdown it can end each side cleanly: a Close frame with 1001 "going away"
(§7.4.1) is put between two frames in each direction, nothing more is sent after it (§5.5.1), and
the tunnel closes once both sides answered with their own Close frame or the grace period ended.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from typing import TYPE_CHECKING, Final

from agent.proxy.spans import finished_request
from agent.rules.access import access_event

if TYPE_CHECKING:
    from agent.proxy.context import ProxyContext
    from agent.proxy.request_head import RequestHead

log = logging.getLogger("agent.proxy")

GOING_AWAY: Final = struct.pack("!H", 1001) + b"going away"


def close_frame(*, masked: bool) -> bytes:
    """A Close frame with 1001: unmasked from a server, masked from a client (RFC 6455 §5.3)."""
    if not masked:
        return b"\x88" + bytes([len(GOING_AWAY)]) + GOING_AWAY
    key = os.urandom(4)
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(GOING_AWAY))
    return b"\x88" + bytes([0x80 | len(GOING_AWAY)]) + key + payload


class FrameTracker:
    """Where the frames of one direction of a WebSocket stream begin and end (headers only)."""

    __slots__ = ("header", "remaining", "saw_close")

    def __init__(self) -> None:
        self.remaining = 0  # payload bytes of the current frame still to come
        self.header = b""  # the start of a frame header split across reads
        self.saw_close = False

    @property
    def at_boundary(self) -> bool:
        return self.remaining == 0 and not self.header

    def feed(self, data: bytes) -> int | None:
        """Follow ``data``; the offset just past the first frame that ends in it, or None."""
        n = len(data)
        if self.remaining >= n and not self.header:  # inside one payload: the common large-frame case
            self.remaining -= n
            return n if self.remaining == 0 else None
        first: int | None = None
        pos = 0
        while pos < n:
            if self.remaining:
                take = min(self.remaining, n - pos)
                self.remaining -= take
                pos += take
            else:
                pos = self._header(data, pos)
                if pos < 0:
                    return first
            if first is None and self.remaining == 0 and not self.header:
                first = pos
        return first

    def _header(self, data: bytes, pos: int) -> int:
        """Read a frame header at ``pos``; the position after it, or -1 when it is incomplete."""
        buf = self.header + data[pos : pos + 14]
        size = _header_size(buf)
        if size is None or len(buf) < size:
            self.header = buf
            return -1
        used = size - len(self.header)
        self.header = b""
        if buf[0] & 0x0F == 0x8:
            self.saw_close = True
        length = buf[1] & 0x7F
        if length == 126:
            length = int.from_bytes(buf[2:4], "big")
        elif length == 127:
            length = int.from_bytes(buf[2:10], "big")
        self.remaining = length
        return pos + used


def _header_size(buf: bytes) -> int | None:
    if len(buf) < 2:
        return None
    length = buf[1] & 0x7F
    extended = 2 if length == 126 else 8 if length == 127 else 0
    return 2 + extended + (4 if buf[1] & 0x80 else 0)


class TunnelEnd(asyncio.Protocol):
    """One side of a tunnel: the client's connection or the app's."""

    __slots__ = ("eof", "fin_sent", "frames", "name", "other", "sent_close", "transport", "tunnel")

    def __init__(self, tunnel: Tunnel, name: str, *, websocket: bool) -> None:
        self.tunnel = tunnel
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.other: TunnelEnd | None = None
        self.eof = False  # this side sent FIN
        self.fin_sent = False  # the agent passed the other side's FIN on to this side
        self.frames = FrameTracker() if websocket else None  # frames this side sends
        self.sent_close = False  # the agent sent this side its Close frame (drain)

    def data_received(self, data: bytes) -> None:
        self.tunnel.relay(self, data)

    def eof_received(self) -> bool:
        self.eof = True
        return self.tunnel.half_closed(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.tunnel.lost(self, exc)

    def pause_writing(self) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.pause_reading()

    def resume_writing(self) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.fin_sent and not self.transport.is_closing():
            self.transport.write(data)


class Tunnel:
    """A client connection and an app connection joined after a 101."""

    def __init__(
        self,
        ctx: ProxyContext,
        *,
        request_id: str,
        trace_id: str,
        method: str,
        path: str,
        client_ip: str | None,
        user_agent: str,
        websocket: bool,
        started: float,
    ) -> None:
        self.ctx = ctx
        self.request_id = request_id
        self.trace_id = trace_id
        self.method = method
        self.path = path
        self.client_ip = client_ip
        self.user_agent = user_agent
        self.websocket = websocket
        self.started = started
        self.client = TunnelEnd(self, "client", websocket=websocket)
        self.upstream = TunnelEnd(self, "upstream", websocket=websocket)
        self.client.other, self.upstream.other = self.upstream, self.client
        self.bytes_in = 0  # client -> app
        self.bytes_out = 0  # app -> client
        self.last_activity = time.monotonic()
        self.closing_deadline: float | None = None  # set when the drain began the close handshake
        self.closed_by: str | None = None
        self.ended = False
        self.head: RequestHead | None = None  # the upgrade request, for its span

    @classmethod
    def for_request(cls, ctx: ProxyContext, head: RequestHead, *, client_ip: str | None, started: float) -> Tunnel:
        """The tunnel an upgrade request opens once the app answered 101."""
        tunnel = cls(
            ctx,
            request_id=head.ids.request_id,
            trace_id=head.ids.trace_id,
            method=head.method.decode("latin-1"),
            path=head.path.decode("latin-1"),
            client_ip=client_ip,
            user_agent=head.user_agent[:512].decode("latin-1"),
            websocket=head.upgrade is not None and head.upgrade.lower().startswith(b"websocket"),
            started=started,
        )
        tunnel.head = head
        return tunnel

    def start(self, client: asyncio.Transport, upstream: asyncio.Transport, from_client: bytes, from_upstream: bytes) -> None:
        """Take over both transports; bytes that arrived with the handshake go first."""
        for end, transport in ((self.client, client), (self.upstream, upstream)):
            end.transport = transport
            transport.set_protocol(end)
        self.ctx.tunnels.add(self)
        self.ctx.metrics.tunnel_opened()
        if from_upstream:
            self.relay(self.upstream, from_upstream)
        if from_client:
            self.relay(self.client, from_client)
        client.resume_reading()
        upstream.resume_reading()

    def relay(self, source: TunnelEnd, data: bytes) -> None:
        self.last_activity = time.monotonic()
        dest = source.other
        assert dest is not None
        frames = source.frames
        if frames is not None:
            if self.closing_deadline is not None:
                data = self._while_closing(source, dest, data)
            else:
                frames.feed(data)
                if frames.saw_close and self.closed_by is None:
                    # RFC 6455 §7.1.2: the side whose Close frame came first closed the connection;
                    # who ends TCP first after the handshake says nothing (§7.1.1, and clients differ).
                    self.closed_by = source.name
        if not data:
            return
        if source is self.client:
            self.bytes_in += len(data)
            self.ctx.metrics.tunnel_bytes("client_to_upstream", len(data))
        else:
            self.bytes_out += len(data)
            self.ctx.metrics.tunnel_bytes("upstream_to_client", len(data))
        dest.write(data)

    def _while_closing(self, source: TunnelEnd, dest: TunnelEnd, data: bytes) -> bytes:
        """During the drain's close handshake: finish the frame under way, then send ``dest`` its Close."""
        frames = source.frames
        assert frames is not None
        if dest.sent_close:
            frames.feed(data)  # only to see the Close frame that answers ours
            self._maybe_done()
            return b""
        cut = frames.feed(data)
        if cut is None:
            return data  # still inside a frame: pass it on
        dest.write(data[:cut])
        self._send_close(dest)
        self._maybe_done()
        return b""

    def begin_close(self, grace_s: float) -> None:
        """The drain ends: WebSocket peers get 1001 "going away" at the next frame boundary."""
        if not self.websocket:
            self.close("drain")
            return
        self.closing_deadline = time.monotonic() + grace_s
        if self.closed_by is None:  # the agent's Close frames come first: whatever the peers do next answers them
            self.closed_by = "drain"
        for source, dest in ((self.upstream, self.client), (self.client, self.upstream)):
            if source.frames is not None and source.frames.at_boundary:
                self._send_close(dest)
        self._maybe_done()

    def _send_close(self, end: TunnelEnd) -> None:
        if not end.sent_close:
            end.sent_close = True
            end.write(close_frame(masked=end is self.upstream))

    def _maybe_done(self) -> None:
        both_sent = self.client.sent_close and self.upstream.sent_close
        answered = self.client.frames is not None and self.client.frames.saw_close and self.upstream.frames.saw_close  # type: ignore[union-attr]
        if both_sent and answered:
            self.close("drain")

    def half_closed(self, end: TunnelEnd) -> bool:
        """A FIN from ``end``: passed on; the tunnel ends when both sides sent theirs."""
        if self.closed_by is None:
            self.closed_by = end.name
        other = end.other
        assert other is not None
        if other.transport is not None and other.transport.can_write_eof() and not other.transport.is_closing():
            other.fin_sent = True
            other.transport.write_eof()
        if other.eof:
            self.close(self.closed_by)
        return True  # keep the transport open: the other side may still be sending

    def lost(self, end: TunnelEnd, exc: Exception | None) -> None:
        if self.closed_by is None:
            self.closed_by = end.name
        other = end.other
        assert other is not None
        if other.transport is not None:
            if exc is not None:
                other.transport.abort()  # a reset is passed on as a reset
            else:
                other.transport.close()  # after what is buffered for it is sent
        self._end()

    def close(self, closed_by: str) -> None:
        if self.closed_by is None:
            self.closed_by = closed_by
        for end in (self.client, self.upstream):
            if end.transport is not None:
                end.transport.close()
        self._end()

    def sweep(self, now: float, idle_timeout_s: float) -> None:
        if self.closing_deadline is not None and now > self.closing_deadline:
            self.close("drain")
        elif now - self.last_activity > idle_timeout_s:
            self.close("idle")

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        ctx = self.ctx
        ctx.tunnels.discard(self)
        ctx.metrics.tunnel_closed()
        if self.head is not None and self.head.sampled and ctx.tracer is not None:  # one span for the whole tunnel
            ctx.tracer.record(
                finished_request(
                    self.head,
                    route=ctx.metrics.route(self.path),
                    status=101,
                    started=self.started,
                    ended=time.perf_counter(),
                    upstream_started=0.0,
                    client_ip=self.client_ip,
                    error_type=None,
                    trusted=ctx.settings.is_trusted(self.client_ip),
                )
            )
        if ctx.access_log.enabled:
            event = access_event(
                request_id=self.request_id,
                trace_id=self.trace_id,
                method=self.method,
                path=self.path,
                status=101,
                duration_s=time.perf_counter() - self.started,
                bytes_sent=self.bytes_out,
                client_ip=self.client_ip,
                user_agent=self.user_agent,
                upstream_s=None,
            )
            event.update(bytes_in=self.bytes_in, bytes_out=self.bytes_out, closed_by=self.closed_by)
            ctx.access_log.write(event)
