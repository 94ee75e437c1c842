"""Probe-path benchmark: how cheap are the agent's health endpoints and its proxy hop?

    python -m bench.probe [--seconds 10] [--connections 32] [--runs 3] [--with-db]

Starts a real upstream app (``tests.support.upstream``), optionally a real PostgreSQL
(``tests.support.postgres``), and the real agent (``python -m agent run -c <tmp toml>``, pinned to
one CPU with ``taskset``), then drives it with ``wrk`` pinned to another CPU (or with a small
aiohttp load generator when wrk is missing). Prints a table and, as the very last line, one JSON
object with every number. See bench/README.md for what each column means.

Everything listens on 127.0.0.1; every wait is bounded; every child process is stopped on exit,
including on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # so ``tests.support`` imports when run from elsewhere
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.agent import to_toml  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.upstream import UpstreamProcess, start_upstream_process  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
IDLE_SETTLE_S = 1.0


# ------------------------------------------------------------------ process hygiene
class Children:
    """Every process this benchmark starts, so that all of them are stopped on any exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cleanups: list[Any] = []  # callables, run last-in first-out

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)
        while self.cleanups:
            with contextlib.suppress(Exception):
                self.cleanups.pop()()


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------- measurement
def cpu_ticks(pid: int, thread: int | None = None) -> int:
    """utime + stime of the whole process (all threads) from /proc/<pid>/stat, in clock ticks;
    with ``thread``, of that thread alone (/proc/<pid>/task/<thread>/stat)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    data = Path(path).read_bytes()
    fields = data[data.rindex(b")") + 2 :].split()  # comm may contain spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of the stat line


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)


def get_status(url: str, timeout: float = 1.0) -> int | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


def pin_prefix(cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses + socket errors
    client_cpu_s: float | None = None  # the load generator's own CPU during the window, when it reports it


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if not match:
            raise ValueError(f"wrk output lacks {pattern!r}:\n{output}")
        return match

    done = find(r"^\s*(\d+) requests in ([\d.]+\w+)")
    errors = 0
    if non2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(non2xx.group(1))
    if sock := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(x) for x in sock.groups())
    return LoadResult(
        requests=int(done.group(1)),
        duration_s=_ms(done.group(2)) / 1000,
        rps=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=_ms(find(r"^\s+50%\s+(\S+)").group(1)),
        p99_ms=_ms(find(r"^\s+99%\s+(\S+)").group(1)),
        errors=errors,
    )


class LoadGenerator:
    """wrk (pinned) when installed, else ``python -m bench.probe _loadgen`` (pinned the same way)."""

    def __init__(
        self,
        children: Children,
        kind: str,
        connections: int,
        seconds: float,
        cpu: int | None,
        *,
        preexec_fn: Callable[[], None] | None = None,  # e.g. a parent-death signal for the child
    ) -> None:
        self.children = children
        self.kind = kind
        self.connections = connections
        self.seconds = seconds
        self.cpu = cpu
        self.preexec_fn = preexec_fn

    def argv(self, url: str) -> list[str]:
        if self.kind == "wrk":
            return ["wrk", "-t1", f"-c{self.connections}", f"-d{int(self.seconds)}s", "--latency", "--timeout", "5s", url]
        return [sys.executable, "-m", "bench.probe", "_loadgen", url, str(self.connections), str(self.seconds)]

    def run(self, url: str) -> LoadResult:
        argv = self.argv(url)
        proc = self.children.popen(
            pin_prefix(self.cpu) + argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        try:
            out, _ = proc.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired as exc:
            self.children.stop(proc)
            raise RuntimeError(f"load generator did not finish within {self.seconds + 30:.0f} s") from exc
        finally:
            if proc.poll() is None:
                self.children.stop(proc)
            elif proc in self.children.procs:
                self.children.procs.remove(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}:\n{text}")
        if self.kind == "wrk":
            return parse_wrk(text)
        return LoadResult(**json.loads(text.strip().splitlines()[-1]))


async def _python_loadgen(url: str, connections: int, seconds: float) -> LoadResult:
    """A closed-loop generator like wrk's: ``connections`` keep-alive workers, each back to back."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status >= 400:
                        errors += 1
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections, ssl=False)  # https rows: the benchmark's own certificate
    timeout = aiohttp.ClientTimeout(total=5)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    duration = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return LoadResult(len(latencies), duration, len(latencies) / duration, pct(0.50), pct(0.99), errors)


# --------------------------------------------------------------------------- agent
@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    startup_s: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def agent_config(upstream_url: str, dsn: str | None, port: int, admin_port: int) -> dict[str, Any]:
    """Defaults except ports, upstream, a fast drain (quick cleanup) and no disk check."""
    config: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}", "drain_delay_s": 0.0, "shutdown_timeout_s": 2.0},
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "upstream": {"url": upstream_url},
        "checks": {"disk": {"enabled": False}},  # upstream http check stays (default)
    }
    if dsn is not None:
        config["checks"]["database"] = {"type": "postgres", "dsn": dsn}
    return config


def start_agent(children: Children, workdir: Path, name: str, upstream_url: str, dsn: str | None, cpu: int | None) -> Agent:
    """Start the agent and time process start -> first ``/health/ready`` 200 (5 ms polling)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, admin_port = free_port(), free_port()
    config_path = workdir / f"{name}.toml"
    config_path.write_text(to_toml(agent_config(upstream_url, dsn, port, admin_port)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    # Logs to a file, not a pipe nobody reads (a full pipe would stall the agent).
    with (workdir / f"{name}.log").open("ab") as log:
        started = time.monotonic()
        proc = children.popen(
            [*pin_prefix(cpu), sys.executable, "-m", "agent", "run", "-c", str(config_path)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ready_url = f"http://127.0.0.1:{port}/health/ready"
    while time.monotonic() - started < READY_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited {proc.returncode}: {(workdir / f'{name}.log').read_text()[-2000:]}")
        if get_status(ready_url, timeout=0.5) == 200:
            return Agent(proc, port, admin_port, time.monotonic() - started)
        time.sleep(0.005)
    children.stop(proc)
    raise TimeoutError(f"agent not ready after {READY_TIMEOUT_S} s: {(workdir / f'{name}.log').read_text()[-2000:]}")


# ---------------------------------------------------------------------------- rows
@dataclass
class Row:
    name: str
    target: str  # "agent" or "upstream"
    url: str
    runs: list[LoadResult] = field(default_factory=list)
    agent_cpu_us_per_req: list[float] = field(default_factory=list)
    upstream_cpu_us_per_req: list[float] = field(default_factory=list)
    rss_after_mib: float = 0.0

    def summary(self) -> dict[str, Any]:
        med = statistics.median
        return {
            "name": self.name,
            "target": self.target,
            "rps_runs": [round(r.rps, 1) for r in self.runs],
            "rps_median": round(med(r.rps for r in self.runs), 1),
            "p50_ms": round(med(r.p50_ms for r in self.runs), 3),
            "p99_ms": round(med(r.p99_ms for r in self.runs), 3),
            "agent_cpu_us_per_req": round(med(self.agent_cpu_us_per_req), 1),
            "upstream_cpu_us_per_req": round(med(self.upstream_cpu_us_per_req), 1),
            "errors": sum(r.errors for r in self.runs),
            "requests": sum(r.requests for r in self.runs),
            "agent_rss_after_mib": round(self.rss_after_mib, 1),
        }


def measure(row: Row, load: LoadGenerator, agent_pid: int, upstream_pid: int, runs: int) -> None:
    for _ in range(runs):
        a0, u0 = cpu_ticks(agent_pid), cpu_ticks(upstream_pid)
        result = load.run(row.url)
        a1, u1 = cpu_ticks(agent_pid), cpu_ticks(upstream_pid)
        done = max(result.requests, 1)
        row.runs.append(result)
        row.agent_cpu_us_per_req.append((a1 - a0) / CLK_TCK * 1e6 / done)
        row.upstream_cpu_us_per_req.append((u1 - u0) / CLK_TCK * 1e6 / done)
    row.rss_after_mib = rss_mib(agent_pid)


def render_table(meta: dict[str, Any], rows: list[dict[str, Any]], startup: dict[str, Any], rss_idle: float) -> str:
    lines = [
        f"sidecar-agent probe benchmark — {meta['loadgen']} -t1 -c{meta['connections']} -d{meta['seconds']}s, "
        f"{meta['runs']} runs per row",
        f"agent CPU {meta['agent_cpu']}, load generator CPU {meta['loadgen_cpu']}, upstream CPU {meta['upstream_cpu']}; "
        f"{meta['cpus']} CPUs; Python {meta['python']}; agent {meta['agent_version']}; "
        f"agent config: {'postgres + http' if meta['with_db'] else 'http'} checks",
        "",
    ]
    header = (
        "row",
        "requests/s per run",
        "median r/s",
        "p50 ms",
        "p99 ms",
        "agent µs/req",
        "upstr µs/req",
        "errors",
        "RSS after MiB",
    )
    body = [
        (
            r["name"],
            " / ".join(f"{x:.0f}" for x in r["rps_runs"]),
            f"{r['rps_median']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['agent_cpu_us_per_req']:.1f}",
            f"{r['upstream_cpu_us_per_req']:.1f}",
            str(r["errors"]),
            f"{r['agent_rss_after_mib']:.1f}" if r["target"] == "agent" else "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    lines.append(fmt(header))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(b) for b in body)
    lines.append("")
    lines.append(f"agent RSS idle (after start, before load): {rss_idle:.1f} MiB")
    for label, values in startup.items():
        lines.append(
            f"start -> first /health/ready 200 ({label}): median {statistics.median(values) * 1000:.0f} ms "
            f"(runs: {', '.join(f'{v * 1000:.0f}' for v in values)} ms)"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def plan_cpus() -> tuple[int | None, int | None, int | None]:
    """(agent, load generator, upstream) CPUs: the first allowed CPUs, in that order."""
    cpus = sorted(os.sched_getaffinity(0))
    agent = cpus[0] if len(cpus) >= 2 else None
    loadgen = cpus[1] if len(cpus) >= 2 else None
    upstream = cpus[2] if len(cpus) >= 3 else None
    return agent, loadgen, upstream


def run(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    agent_cpu, loadgen_cpu, upstream_cpu = plan_cpus()
    if shutil.which("taskset") is None:
        agent_cpu = loadgen_cpu = None
    loadgen_kind = "wrk" if args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk")) else "python"
    if loadgen_kind == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("--loadgen wrk given but wrk is not installed")

    print("starting upstream ...", file=sys.stderr, flush=True)
    upstream: UpstreamProcess = start_upstream_process()
    children.cleanups.append(upstream.stop)
    if upstream_cpu is not None:
        os.sched_setaffinity(upstream.pid, {upstream_cpu})

    dsn = None
    if args.with_db:
        from tests.support.postgres import PostgresServer

        print("starting PostgreSQL ...", file=sys.stderr, flush=True)
        pg = PostgresServer(workdir / "pg")
        children.cleanups.append(pg.close)
        pg.start()
        dsn = pg.dsn

    # Start-up time: fresh processes, each stopped before the next one.
    startup: dict[str, list[float]] = {"no database": []}
    if dsn is not None:
        startup["postgres check"] = []
    for label in startup:
        for i in range(args.runs):
            db = dsn if label != "no database" else None
            agent = start_agent(children, workdir, f"startup-{i}", upstream.url, db, agent_cpu)
            startup[label].append(agent.startup_s)
            children.stop(agent.proc)
    print(f"start-up times: { {k: [round(v, 3) for v in vs] for k, vs in startup.items()} }", file=sys.stderr, flush=True)

    agent = start_agent(children, workdir, "agent", upstream.url, dsn, agent_cpu)
    time.sleep(IDLE_SETTLE_S)
    rss_idle = rss_mib(agent.pid)

    load = LoadGenerator(children, loadgen_kind, args.connections, args.seconds, loadgen_cpu)
    rows = [
        Row("/health/ready (agent)", "agent", f"{agent.url}/health/ready"),
        Row("/health/live (agent)", "agent", f"{agent.url}/health/live"),
        Row("/echo via agent (proxied)", "agent", f"{agent.url}/echo"),
        Row("/echo direct to upstream", "upstream", f"{upstream.url}/echo"),
    ]
    for row in rows:
        print(f"load: {row.name} ...", file=sys.stderr, flush=True)
        measure(row, load, agent.pid, upstream.pid, args.runs)
        if agent.proc.poll() is not None:
            raise RuntimeError(f"agent died during {row.name!r} (exit {agent.proc.returncode})")
    ready_after = get_status(f"{agent.url}/health/ready")

    meta = {
        "seconds": args.seconds,
        "connections": args.connections,
        "runs": args.runs,
        "with_db": args.with_db,
        "loadgen": loadgen_kind,
        "agent_cpu": agent_cpu if agent_cpu is not None else "unpinned",
        "loadgen_cpu": loadgen_cpu if loadgen_cpu is not None else "unpinned",
        "upstream_cpu": upstream_cpu if upstream_cpu is not None else "unpinned",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "agent_version": _agent_version(),
        "clk_tck": CLK_TCK,
    }
    summaries = [row.summary() for row in rows]
    return {
        "bench": "sidecar-agent/probe",
        "meta": meta,
        "rows": summaries,
        "agent_rss_idle_mib": round(rss_idle, 1),
        "startup_to_ready_s": {
            k: {"runs": [round(v, 4) for v in vs], "median": round(statistics.median(vs), 4)} for k, vs in startup.items()
        },
        "ready_after_load": ready_after,
        "_table": render_table(meta, summaries, startup, rss_idle),
    }


def _agent_version() -> str:
    try:
        from agent import __version__

        return __version__
    except Exception:  # pragma: no cover - informational only
        return "?"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_loadgen"]:  # internal: the fallback load generator, run as a pinned child
        url, connections, seconds = argv[1], int(argv[2]), float(argv[3])
        print(json.dumps(asdict(asyncio.run(_python_loadgen(url, connections, seconds)))))
        return 0

    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="runs per row, and agent starts per start-up row (default 3)")
    parser.add_argument("--with-db", action="store_true", help="start a real PostgreSQL and add a postgres check")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="default: wrk if installed")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.connections < 1 or args.runs < 1:
        parser.error("--seconds, --connections and --runs must be >= 1")

    children = Children()
    # Explicit handlers: a SIGINT inherited as "ignored" (background jobs) must still stop us.
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    try:
        result = run(args, children, workdir)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every child process", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(workdir, ignore_errors=True)
    table = result.pop("_table")
    print(table)
    if result["ready_after_load"] != 200:
        print(f"WARNING: /health/ready answered {result['ready_after_load']} after the load", file=sys.stderr)
    line = json.dumps(result, separators=(",", ":"))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
