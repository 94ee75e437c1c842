"""The slow-loris figure's tricklers, until SIGINT.

``n_header`` connections send a request head one byte per second; ``n_body`` send a whole head
with ``Content-Length: 1000000``, then one body byte per second. They open over ``ramp_s``
(``RAMPED`` is printed once all are connected); a cut one reconnects at once when ``reconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from typing import Any

from bench.reliability.clients.wire import HOST, close_quietly, status_of
from bench.reliability.report import pct, rnd
from bench.reliability.upstream import FAST_PATH, UPLOAD_PREFIX

KINDS = ("header", "body")
HEADER_BYTES = b"GET " + FAST_PATH.encode() + b" HTTP/1.1\r\nHost: app\r\nX-Slow: " + b"a" * 4000


async def watch(reader: asyncio.StreamReader) -> tuple[str, int | None]:
    """Read until the agent closes; (how it ended, the status of what it sent first)."""
    data = b""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        return ("response then reset" if data else "reset"), status_of(data)
    except OSError as exc:
        return type(exc).__name__, status_of(data)
    st = status_of(data)
    return (f"{st} then close" if st else "closed (EOF)"), st


class Tricklers:
    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.stop = asyncio.Event()
        self.t_start = time.time()
        self.end = self.t_start + p["max_s"]
        self.stats: dict[str, dict[str, Any]] = {
            kind: {"opened": 0, "cut": 0, "how": Counter(), "cut_after": [], "cut_at": [], "connect_errors": 0} for kind in KINDS
        }
        self.open_now = self.max_open = self.connected = 0
        self.total = p["n_header"] + p["n_body"]
        self.ramped = asyncio.Event()

    def running(self) -> bool:
        return not self.stop.is_set() and time.time() < self.end

    async def trickler(self, kind: str, idx: int) -> None:
        await asyncio.sleep(self.p["ramp_s"] * idx / max(self.total, 1))
        s = self.stats[kind]
        first = True
        while self.running():
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.p["port"]), 5)
            except (OSError, TimeoutError):
                s["connect_errors"] += 1
                await asyncio.sleep(0.2)
                continue
            s["opened"] += 1
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
            if first:
                first = False
                self.connected += 1
                if self.connected == self.total:
                    self.ramped.set()
            is_cut = await self.trickle(kind, idx, reader, writer)
            if not is_cut or not self.p["reconnect"]:
                break

    async def trickle(self, kind: str, idx: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One byte a second on one connection until the agent cuts it (True) or the run ends."""
        watcher = asyncio.ensure_future(watch(reader))
        payload = HEADER_BYTES if kind == "header" else b""  # body: the same single byte again and again
        if kind == "body":
            writer.write(
                f"POST {UPLOAD_PREFIX}{idx} HTTP/1.1\r\nHost: app\r\nContent-Type: application/octet-stream\r\n"
                "Content-Length: 1000000\r\n\r\n".encode()
            )
        pos = 0
        t_first = time.time()
        while self.running() and not watcher.done():
            with contextlib.suppress(Exception):
                writer.write(payload[pos : pos + 1] if payload else b"x")
            pos += 1
            await asyncio.wait({watcher}, timeout=1.0)
        self.open_now -= 1
        if not watcher.done():
            watcher.cancel()
            close_quietly(writer)
            return False
        how, _ = watcher.result()
        now = time.time()
        s = self.stats[kind]
        s["cut"] += 1
        s["how"][how] += 1
        s["cut_after"].append(now - t_first)
        s["cut_at"].append(now - self.t_start)
        close_quietly(writer)
        return True

    def kinds(self) -> dict[str, Any]:
        out = {}
        for kind, s in self.stats.items():
            ca = s["cut_after"]
            out[kind] = {
                "opened": s["opened"],
                "cut": s["cut"],
                "how": dict(s["how"]),
                "connect_errors": s["connect_errors"],
                "cut_after_s": {
                    "min": rnd(min(ca) if ca else None, 3),
                    "p50": rnd(pct(ca, 0.5), 3),
                    "max": rnd(max(ca) if ca else None, 3),
                },
                "first_cut_s": rnd(min(s["cut_at"]) if s["cut_at"] else None, 3),
                "cuts_per_5s": dict(Counter(int(t // 5) * 5 for t in s["cut_at"])),
            }
        return out

    async def run(self) -> dict[str, Any]:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self.stop.set)
        tasks = [asyncio.ensure_future(self.trickler("header", i)) for i in range(self.p["n_header"])]
        tasks += [asyncio.ensure_future(self.trickler("body", self.p["n_header"] + i)) for i in range(self.p["n_body"])]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ramped.wait(), self.p["ramp_s"] + 30)
        print("RAMPED", flush=True)
        await asyncio.gather(*tasks)
        return {"kinds": self.kinds(), "max_open": self.max_open, "seconds": round(time.time() - self.t_start, 2)}


async def run(p: dict[str, Any]) -> dict[str, Any]:
    return await Tricklers(p).run()
