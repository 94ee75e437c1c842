"""A real upstream HTTP app: the "app behind the proxy" in tests.

Use it in-process (``make_upstream_app()`` returns an ``aiohttp.web.Application``)
or as a subprocess::

    python -m tests.support.upstream --port N [--host 127.0.0.1]

which prints ``READY <port>`` on stdout once listening (``--port 0`` picks a
free port and reports it) and serves until SIGTERM/SIGINT.
``start_upstream_process()`` wraps the subprocess form.

Routes (all JSON):

* ``GET /health``            200 ``{"status": "ok"}`` / 500 ``{"status": "broken"}``
                             (mode "failing") / 200 after ``delay_s`` (mode "slow")
* ``GET|POST /_control``     read / switch mode; GET adds ``{"requests": n}`` (not counting the agent's checks)
* ``* /echo``, ``* /echo/{tail}``  method, raw path, header pairs, body length
* ``GET /slow?delay_s=x``    sleeps x seconds, 200 ``{"slept": x}``
* ``GET /status/{code}``     that status, body ``{"code": code}`` (none for 204/304)
* ``GET /bytes/{n}``         n bytes of ``b"x"`` streamed in 64 KiB chunks
* ``/api/v1/plans[/{id}]``   a tiny FastAPI-lookalike (404/422/201 bodies)

Routes for the proxy tests (``tests/proxy``); what they saw is counted in ``events``
(``GET /_control`` returns them, ``UpstreamProcess.events()`` reads them):

* ``GET /cookies``           two ``Set-Cookie`` headers
* ``GET /redirect``          302 to ``/echo``
* ``GET /gzip``              a gzip body with ``Content-Encoding: gzip`` whatever was asked; the
                             request's ``Accept-Encoding`` comes back in ``X-Seen-Accept-Encoding``
* ``GET /html500``           500 with an HTML body
* ``GET /fingerprint``       ``Server``, ``X-Powered-By`` and its own ``Content-Security-Policy``
* ``* /upload``              reads the body as it streams: byte count, sha256, Content-Encoding
                             (events ``upload_complete`` / ``upload_incomplete``)
* ``GET /chunked/{n}``       n bytes, chunked (no Content-Length)
* ``GET /drip?n=&interval_s=``  n chunks of 1 KiB, one per interval (event ``drip_disconnect``
                             when the peer goes away mid-response)
* ``GET /hold?delay_s=``     sleeps, returns the peer port; ``hold_max_active`` tracks how many
                             ran at once
* ``GET /peer``              the port the request came from (connection reuse)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support import REPO_ROOT

MODES = ("healthy", "failing", "slow")
DEFAULT_DELAY_S = 5.0
CHUNK_SIZE = 64 * 1024
READY_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0


@dataclass
class UpstreamState:
    """Mutable per-app state: health mode, counters and stored plans."""

    mode: str = "healthy"
    delay_s: float = DEFAULT_DELAY_S
    requests: int = 0
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    hold_active: int = 0

    def count(self, event: str, n: int = 1) -> None:
        self.events[event] = self.events.get(event, 0) + n

    def public(self) -> dict[str, Any]:
        """The control state as returned by ``POST /_control``."""
        return {"mode": self.mode, "delay_s": self.delay_s}


STATE_KEY: web.AppKey[UpstreamState] = web.AppKey("upstream_state", UpstreamState)


def _state(request: web.Request) -> UpstreamState:
    return request.app[STATE_KEY]


# --------------------------------------------------------------- middleware
@web.middleware
async def _count_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count every request except those to ``/_control`` and the agent's own ``http`` checks
    (``User-Agent: sidecar-agent-check``): those run on their own schedule, and a test asking
    "was this request forwarded?" must not race them."""
    if request.path != "/_control" and request.headers.get("User-Agent") != "sidecar-agent-check":
        _state(request).requests += 1
    return await handler(request)


# ----------------------------------------------------------------- handlers
async def health(request: web.Request) -> web.Response:
    """Answer according to the current mode."""
    state = _state(request)
    if state.mode == "failing":
        return web.json_response({"status": "broken"}, status=500)
    if state.mode == "slow":
        await asyncio.sleep(state.delay_s)
    return web.json_response({"status": "ok"})


async def control_get(request: web.Request) -> web.Response:
    """Current mode, delay and request counter."""
    state = _state(request)
    return web.json_response({**state.public(), "requests": state.requests, "events": state.events})


async def control_post(request: web.Request) -> web.Response:
    """Switch mode / delay; 400 on an unknown mode or bad JSON."""
    state = _state(request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "invalid JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "expected an object"}, status=400)
    mode = body.get("mode", state.mode)
    if mode not in MODES:
        return web.json_response({"error": f"unknown mode {mode!r}"}, status=400)
    try:
        delay_s = float(body.get("delay_s", state.delay_s))
    except (TypeError, ValueError):
        return web.json_response({"error": "delay_s must be a number"}, status=400)
    state.mode, state.delay_s = mode, delay_s
    if body.get("reset_events"):
        state.events.clear()
    return web.json_response(state.public())


async def echo(request: web.Request) -> web.Response:
    """Echo method, raw path (with query), header pairs and body size."""
    body_len = 0
    async for chunk in request.content.iter_any():
        body_len += len(chunk)
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers]
    return web.json_response({"method": request.method, "path": request.raw_path, "headers": headers, "body_len": body_len})


async def slow(request: web.Request) -> web.Response:
    """Sleep ``delay_s`` (query, default 1.0) seconds, then 200."""
    try:
        delay = float(request.query.get("delay_s", "1.0"))
    except ValueError:
        return web.json_response({"error": "delay_s must be a number"}, status=400)
    await asyncio.sleep(delay)
    return web.json_response({"slept": delay})


async def status(request: web.Request) -> web.Response:
    """Respond with the requested status code (200..599)."""
    try:
        code = int(request.match_info["code"])
    except ValueError:
        return web.json_response({"error": "bad code"}, status=400)
    if not 200 <= code <= 599:
        return web.json_response({"error": "code out of range"}, status=400)
    if code in (204, 304):
        return web.Response(status=code)
    return web.json_response({"code": code}, status=code)


async def stream_bytes(request: web.Request) -> web.StreamResponse:
    """Stream exactly n bytes of ``b"x"`` with a Content-Length header."""
    try:
        total = int(request.match_info["n"])
    except ValueError:
        return web.json_response({"error": "bad length"}, status=400)
    if total < 0:
        return web.json_response({"error": "negative length"}, status=400)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = total
    await response.prepare(request)
    remaining = total
    while remaining > 0:
        size = min(CHUNK_SIZE, remaining)
        await response.write(b"x" * size)
        remaining -= size
    await response.write_eof()
    return response


# ---------------------------------------------------- FastAPI-like plans API
def _missing_name() -> web.Response:
    return web.json_response(
        {"detail": [{"loc": ["body", "name"], "msg": "field required", "type": "value_error.missing"}]},
        status=422,
    )


async def plans_list(request: web.Request) -> web.Response:
    """All stored plans, in creation order."""
    return web.json_response(list(_state(request).plans.values()))


async def plans_get(request: web.Request) -> web.Response:
    """One plan, or FastAPI's 404 body."""
    plan = _state(request).plans.get(request.match_info["plan_id"])
    if plan is None:
        return web.json_response({"detail": "Plan not found"}, status=404)
    return web.json_response(plan)


async def plans_create(request: web.Request) -> web.Response:
    """201 with the new plan; 422 (FastAPI shape) on a missing/invalid name."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _missing_name()
    if not isinstance(body, dict) or "name" not in body:
        return _missing_name()
    if not isinstance(body["name"], str):
        return web.json_response(
            {"detail": [{"loc": ["body", "name"], "msg": "str type expected", "type": "type_error.str"}]},
            status=422,
        )
    plan = {**body, "id": str(uuid.uuid4())}
    _state(request).plans[plan["id"]] = plan
    return web.json_response(plan, status=201)


# ------------------------------------------------------ proxy-test routes
GZIP_PAYLOAD = json.dumps({"compressed": True, "pad": "z" * 2000}).encode()


async def cookies(request: web.Request) -> web.Response:
    """Two Set-Cookie headers on one response."""
    response = web.json_response({"cookies": 2})
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/; HttpOnly")
    return response


async def redirect(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/echo"}, text="moved")


async def gzipped(request: web.Request) -> web.Response:
    """Always gzip, so a proxy that decompresses (or asks for it) is caught."""
    body = gzip.compress(GZIP_PAYLOAD, mtime=0)
    return web.Response(
        body=body,
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "X-Seen-Accept-Encoding": request.headers.get("Accept-Encoding", "-"),
        },
    )


async def html500(request: web.Request) -> web.Response:
    return web.Response(status=500, text="<html><body>Traceback: secret internals</body></html>", content_type="text/html")


async def fingerprint(request: web.Request) -> web.Response:
    response = web.json_response({"ok": True})
    response.headers["Server"] = "upstream-secret/1.0"
    response.headers["X-Powered-By"] = "PHP/5.0"
    response.headers["Content-Security-Policy"] = "default-src 'none'; upstream-own"
    return response


async def upload(request: web.Request) -> web.Response:
    """Read the body as it streams; count it and hash it, never hold it."""
    digest = hashlib.sha256()
    total = 0
    state = _state(request)
    try:
        async for data in request.content.iter_any():
            digest.update(data)
            total += len(data)
    except Exception:
        state.count("upload_incomplete")
        raise
    if request.content_length is not None and total != request.content_length:
        state.count("upload_incomplete")
    else:
        state.count("upload_complete")
    return web.json_response(
        {
            "bytes": total,
            "sha256": digest.hexdigest(),
            "content_encoding": request.headers.get("Content-Encoding"),
            "chunked": "chunked" in request.headers.get("Transfer-Encoding", ""),
        }
    )


async def chunked_bytes(request: web.Request) -> web.StreamResponse:
    total = int(request.match_info["n"])
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    remaining = total
    while remaining > 0:
        size = min(CHUNK_SIZE, remaining)
        await response.write(b"y" * size)
        remaining -= size
    await response.write_eof()
    return response


async def drip(request: web.Request) -> web.StreamResponse:
    """Slow chunked response; notes a peer that went away mid-response."""
    count = int(request.query.get("n", "100"))
    interval = float(request.query.get("interval_s", "0.05"))
    state = _state(request)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for _ in range(count):
            await response.write(b"d" * 1024)
            await asyncio.sleep(interval)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        state.count("drip_disconnect")
        raise
    state.count("drip_complete")
    return response


async def hold(request: web.Request) -> web.Response:
    state = _state(request)
    state.hold_active += 1
    state.events["hold_max_active"] = max(state.events.get("hold_max_active", 0), state.hold_active)
    try:
        await asyncio.sleep(float(request.query.get("delay_s", "0.2")))
    finally:
        state.hold_active -= 1
    return web.json_response({"peer_port": _peer_port(request)})


def _peer_port(request: web.Request) -> int | None:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return peer[1] if isinstance(peer, tuple) else None


async def peer(request: web.Request) -> web.Response:
    return web.json_response({"peer_port": _peer_port(request)})


def make_upstream_app() -> web.Application:
    """A fresh app with its own ``UpstreamState`` (mode "healthy")."""
    app = web.Application(middlewares=[_count_requests])
    app[STATE_KEY] = UpstreamState()
    app.router.add_get("/health", health)
    app.router.add_get("/_control", control_get)
    app.router.add_post("/_control", control_post)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/slow", slow)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/bytes/{n}", stream_bytes)
    app.router.add_get("/api/v1/plans", plans_list)
    app.router.add_post("/api/v1/plans", plans_create)
    app.router.add_get("/api/v1/plans/{plan_id}", plans_get)
    app.router.add_get("/cookies", cookies)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/html500", html500)
    app.router.add_get("/fingerprint", fingerprint)
    app.router.add_route("*", "/upload", upload)
    app.router.add_get("/chunked/{n}", chunked_bytes)
    app.router.add_get("/drip", drip)
    app.router.add_get("/hold", hold)
    app.router.add_get("/peer", peer)
    return app


# ------------------------------------------------------------- subprocess
async def _serve(host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; print ``READY <port>`` once listening."""
    runner = web.AppRunner(make_upstream_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m tests.support.upstream``."""
    parser = argparse.ArgumentParser(description="Test upstream HTTP app.")
    parser.add_argument("--port", type=int, required=True, help="0 = pick a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port))


class UpstreamProcess:
    """Handle on a running ``python -m tests.support.upstream`` subprocess."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, host: str = "127.0.0.1") -> None:
        self.process = process
        self.port = port
        self.host = host

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. ``http://127.0.0.1:8123``."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        """True while the subprocess has not exited."""
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 5 s; returns the exit code. Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pipes()
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL immediately; returns the exit code. Idempotent."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_pipes()
        return self.process.returncode

    def _close_pipes(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()

    def control(self) -> dict[str, Any]:
        """``GET /_control``: mode, delay_s and requests served."""
        return self._request_json("GET", "/_control")

    def set_mode(self, mode: str, delay_s: float | None = None) -> dict[str, Any]:
        """``POST /_control``; returns the new ``{"mode", "delay_s"}`` state."""
        payload: dict[str, Any] = {"mode": mode}
        if delay_s is not None:
            payload["delay_s"] = delay_s
        return self._request_json("POST", "/_control", payload)

    def requests_served(self) -> int:
        """Requests served so far, excluding ``/_control`` ones and the agent's own health checks."""
        return int(self.control()["requests"])

    def events(self) -> dict[str, int]:
        """What the proxy-test routes saw (``upload_complete``, ``drip_disconnect``, ...)."""
        return dict(self.control().get("events", {}))

    def reset_events(self) -> None:
        """Forget ``events`` (and ``hold_max_active``): ``POST /_control {"reset_events": true}``."""
        self._request_json("POST", "/_control", {"reset_events": True})

    def _request_json(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def __enter__(self) -> UpstreamProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_ready_line(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for ``READY <port>`` on the child's stdout; return the port."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise TimeoutError(f"upstream not READY within {timeout} s")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"upstream exited early (rc={process.wait()})")
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode().strip()
    if not line.startswith("READY "):
        raise RuntimeError(f"unexpected upstream output: {line!r}")
    return int(line.split()[1])


def start_upstream_process(port: int | None = None, host: str = "127.0.0.1") -> UpstreamProcess:
    """Start the upstream subprocess and wait (10 s) until it listens.

    ``port=None`` lets the child bind port 0 and report the port it got, so
    there is no free-port race.  Raises ``TimeoutError``/``RuntimeError`` (after
    killing the child) if it does not become ready.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.upstream", "--port", str(port or 0), "--host", host],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        bound = _read_ready_line(process, READY_TIMEOUT_S)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return UpstreamProcess(process, bound, host)


if __name__ == "__main__":
    main()
