"""The agent's RSS over many new TLS connections: ``python -m bench.tls_rss --connections 50000``.

Starts the agent with ``[server.tls]`` (a trustme ECDSA certificate, no upstream checks, so
``/health/ready`` answers 200 without an app), then opens ``--connections`` new TLS connections in
batches of ``--every``, ``--concurrency`` at a time from a client subprocess: each a full handshake
(no session offered back), one ``GET --path`` with ``Connection: close``, read to the close. After
each batch it asks the agent, through a probe thread this script puts into the agent's process,
for its RSS, glibc's heap (``mallinfo2``: in use vs free), the OpenSSL session cache
(``SSLContext.session_stats()``) and the number of live Python objects; ``--trim`` also calls
``malloc_trim(0)`` and reports the RSS after it (a drop is fragmentation/free heap, not a leak);
``--tracemalloc`` prints the top allocation sites grown between the first and the last batch.

Bisecting knobs: ``--loop asyncio`` (no uvloop), ``--max-tls 1.2`` (a TLS 1.2 client),
``--no-ticket`` (with 1.2: a client without session tickets, whose sessions the server caches),
``--env MALLOC_ARENA_MAX=2`` (agent environment). Prints one line per batch, then one JSON line.
Everything listens on 127.0.0.1; the agent is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.agent import to_toml  # noqa: E402
from tests.support.net import free_port  # noqa: E402

BATCH_TIMEOUT_S = 600.0


# ------------------------------------------------------------------ the probe, inside the agent
def _mallinfo() -> dict[str, int]:
    import ctypes

    fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in fields]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    # mallinfo2 (glibc >= 2.33) sums all arenas: chunks in use, free chunks, mmapped chunks
    return {"heap_in_use": info.uordblks, "heap_free": info.fordblks, "mmapped": info.hblkhd}


def _probe(command: str, state: dict[str, Any]) -> dict[str, Any]:
    import ctypes
    import gc
    import tracemalloc

    import psutil

    from agent.tls import ReloadingContext

    me = psutil.Process()
    out: dict[str, Any] = {"rss": me.memory_info().rss, **_mallinfo()}
    contexts = [o for o in gc.get_objects() if isinstance(o, ReloadingContext)]
    out["session_stats"] = [c.current.session_stats() for c in contexts]
    out["objects"] = len(gc.get_objects())
    if command == "garbage":  # what the last batch left to the cyclic collector, by type
        import collections

        gc.set_debug(gc.DEBUG_SAVEALL)
        out["unreachable"] = gc.collect()
        gc.set_debug(0)
        counts = collections.Counter(type(o).__qualname__ for o in gc.garbage)
        out["garbage_types"] = counts.most_common(25)
        gc.garbage.clear()
        gc.collect()
        out.update({f"after_collect_{k}": v for k, v in _mallinfo().items()})
    if command in ("trim", "garbage"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        out["rss_after_trim"] = me.memory_info().rss
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        first = state.setdefault("first", snapshot)
        out["traced"] = tracemalloc.get_traced_memory()[0]
        if command == "diff" and first is not snapshot:
            out["top"] = [str(stat) for stat in snapshot.compare_to(first, "traceback")[:8]]
            out["top_lines"] = [str(stat) for stat in snapshot.compare_to(first, "lineno")[:12]]
    return out


def agent_wrapper(argv: list[str]) -> int:
    """``--agent ...``: the agent's own ``main``, with a thread answering probe commands on stdin."""
    if os.environ.get("BENCH_LOOP") == "asyncio":
        sys.modules["uvloop"] = None  # type: ignore[assignment]  # run_with_best_loop falls back to asyncio
    if os.environ.get("BENCH_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start(int(os.environ["BENCH_TRACEMALLOC"]))
    reply = os.fdopen(int(os.environ["BENCH_PROBE_FD"]), "w", buffering=1)

    def serve() -> None:
        state: dict[str, Any] = {}
        for line in sys.stdin:
            try:
                result = _probe(line.strip(), state)
            except Exception as exc:  # report, keep serving
                result = {"error": repr(exc)}
            reply.write(json.dumps(result) + "\n")

    threading.Thread(target=serve, name="bench-probe", daemon=True).start()
    from agent.cli import main

    return main(argv)


# ------------------------------------------------------------------ the client
class OneRequest(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.chunks: list[bytes] = []
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(b"".join(self.chunks))


async def _client(port: int, path: str, count: int, concurrency: int, max_tls: str, no_ticket: bool) -> dict[str, int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    context.maximum_version = ssl.TLSVersion.TLSv1_2 if max_tls == "1.2" else ssl.TLSVersion.TLSv1_3
    if no_ticket:  # a TLS 1.2 client without RFC 5077 tickets: the server keeps its session in its cache
        context.options |= ssl.OP_NO_TICKET
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    tally = {"ok": 0, "errors": 0, "left": count}

    async def worker() -> None:
        while tally["left"] > 0:
            tally["left"] -= 1
            try:
                async with asyncio.timeout(10):
                    _, protocol = await loop.create_connection(
                        lambda: OneRequest(request), "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
                    )
                    response = await protocol.done
                tally["ok" if response.startswith(b"HTTP/1.1 200 ") else "errors"] += 1
            except (OSError, ssl.SSLError, TimeoutError):
                tally["errors"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"ok": tally["ok"], "errors": tally["errors"]}


def client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.tls_rss --client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/health/ready")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tls", default="1.3")
    parser.add_argument("--no-ticket", action="store_true")
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(_client(args.port, args.path, args.count, args.concurrency, args.max_tls, args.no_ticket))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# ------------------------------------------------------------------ the run
def _certificate(directory: Path) -> tuple[Path, Path]:
    import trustme

    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.touch(mode=0o600)
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    import http.client

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the agent exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
            conn.request("GET", "/health/ready")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the agent was not ready in 30 s:\n{log.read_text()[-3000:]}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tls-rss-"))
    cert, key = _certificate(workdir)
    port, admin_port = free_port(), free_port()
    config = {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "drain_delay_s": 0.0,
            "shutdown_timeout_s": 2.0,
            "tls": {"cert_file": str(cert), "key_file": str(key)},
        },
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "upstream": {"url": f"http://127.0.0.1:{free_port()}"},
        "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}, "database": {"enabled": False}},
    }
    (workdir / "agent.toml").write_text(to_toml(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["BENCH_LOOP"] = args.loop
    if args.tracemalloc:
        env["BENCH_TRACEMALLOC"] = str(args.tracemalloc)
    for pair in args.env:
        name, _, value = pair.partition("=")
        env[name] = value
    read_fd, write_fd = os.pipe()
    env["BENCH_PROBE_FD"] = str(write_fd)
    log = workdir / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.tls_rss", "--agent", "run", "-c", str(workdir / "agent.toml")],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
        )
    os.close(write_fd)
    replies = os.fdopen(read_fd)
    assert proc.stdin is not None

    def probe(command: str) -> dict[str, Any]:
        proc.stdin.write(command.encode() + b"\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        return json.loads(replies.readline())

    samples: list[dict[str, Any]] = []
    try:
        _wait_ready(port, proc, log)
        time.sleep(0.5)
        done = 0
        command = "garbage" if args.garbage else "trim" if args.trim else "stats"
        samples.append({"connections": 0, **probe(command)})
        _print(samples[-1])
        while done < args.connections:
            batch = min(args.every, args.connections - done)
            started = time.monotonic()
            client = subprocess.run(
                [sys.executable, "-m", "bench.tls_rss", "--client", "--port", str(port), "--path", args.path,
                 "--count", str(batch), "--concurrency", str(args.concurrency), "--max-tls", args.max_tls,
                 *(["--no-ticket"] if args.no_ticket else [])],
                cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                capture_output=True, text=True, timeout=BATCH_TIMEOUT_S, check=True,
            )  # fmt: skip
            tally = json.loads(client.stdout.splitlines()[-1])
            done += batch
            last = done >= args.connections
            sample = probe("diff" if last and args.tracemalloc else command)
            samples.append({"connections": done, **tally, "seconds": round(time.monotonic() - started, 1), **sample})
            _print(samples[-1])
            if proc.poll() is not None:
                raise SystemExit("the agent died")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for key_ in ("top", "top_lines"):
        for line in samples[-1].get(key_, []):
            sys.stderr.write(f"  {line}\n")
    return {"loop": args.loop, "max_tls": args.max_tls, "no_ticket": args.no_ticket, "env": args.env, "samples": samples}


def _print(sample: dict[str, Any]) -> None:
    mib = 1024 * 1024
    stats = sample.get("session_stats") or [{}]
    line = (
        f"{sample['connections']:>7} conns  rss {sample['rss'] / mib:6.1f} MiB"
        f"  heap in use {sample['heap_in_use'] / mib:6.1f} free {sample['heap_free'] / mib:6.1f}"
        f" mmap {sample['mmapped'] / mib:5.1f}"
        f"  objects {sample['objects']:>7}  sess cache {stats[0].get('number', '-')}"
    )
    if "rss_after_trim" in sample:
        line += f"  rss after trim {sample['rss_after_trim'] / mib:6.1f}"
    if "after_collect_heap_in_use" in sample:
        line += f"  after gc: unreachable {sample['unreachable']}, heap in use {sample['after_collect_heap_in_use'] / mib:6.1f}"
    if "traced" in sample:
        line += f"  traced {sample['traced'] / mib:6.1f}"
    if "errors" in sample:
        line += f"  ({sample['ok']} ok, {sample['errors']} errors, {sample['seconds']} s)"
    sys.stderr.write(line + "\n")
    if sample.get("garbage_types"):
        sys.stderr.write("    garbage: " + ", ".join(f"{name} {n}" for name, n in sample["garbage_types"][:15]) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--agent"]:
        return agent_wrapper(argv[1:])
    if argv[:1] == ["--client"]:
        return client_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.tls_rss", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=10_000, help="sample after every N connections (default 10000)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--path", default="/health/ready")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--max-tls", choices=("1.2", "1.3"), default="1.3")
    parser.add_argument("--no-ticket", action="store_true", help="the client refuses session tickets (OP_NO_TICKET)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="set in the agent's environment")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) in the agent at each sample")
    parser.add_argument(
        "--garbage", action="store_true", help="gc.collect() in the agent at each sample: what it freed, by type (implies --trim)"
    )
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES", help="trace allocations, diff first/last")
    args = parser.parse_args(argv)
    result = run(args)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
