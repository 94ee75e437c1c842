"""The agent's memory at idle and after load, and what its imports cost: ``python -m bench.rss``.

    python -m bench.rss [--variants default,no-admin,postgres,bare] [--runs 3]
                        [--load-seconds 60] [--connections 32] [--top 25]
                        [--probe] [--env NAME=VALUE ...] [--json-out FILE]

Starts a private nginx upstream (``bench.proxy``'s; ``tests.support.upstream`` when nginx is
missing), then for each config variant starts the agent (``python -m agent run -c <toml>``)
``--runs`` times: start -> first ``/health/ready`` 200 (5 ms polling), 1 s idle, then its memory
(psutil ``memory_full_info``: RSS, USS, PSS; ``/proc/PID/smaps``: anonymous vs file-backed, by
mapping) and threads. One more start with ``-X importtime`` gives the import table: self time and
module count per top-level package (the total is the sum of self times). The agent's modules are
byte-compiled first (``compileall``), as ``pip install`` does, so start-up times are an installed
agent's even where ``PYTHONDONTWRITEBYTECODE`` is set.

Variants (all: listeners on 127.0.0.1 free ports, ``drain_delay_s = 0``, otherwise the defaults
of ``agent.toml.example``: admin listener on, the built-in ``upstream`` http check, the ``disk``
check):

* ``default``: as above.
* ``no-admin``: ``admin.enabled = false`` (``/metrics`` moves to the main listener).
* ``postgres``: plus a non-critical ``postgres`` check on a refused port (what asyncpg costs; no
  database needed).
* ``bare``: admin off and no checks at all: the proxy alone.
* ``tracing``: tracing on (ratio 0.01) towards an endpoint nobody listens on.

``--load-seconds N`` then loads the first variant's agent with ``wrk -t1 -c<connections>``
(proxied path ``/``, in 4 slices) and reads its memory after each slice and after 2 s of idle.
``--probe`` runs the agent under ``bench.rss_agent``, which adds a thread that reports glibc's
heap (``mallinfo2``) and the RSS before and after ``gc.collect()`` and ``malloc_trim(0)``;
``--tracemalloc`` also traces (25 frames) from before the agent's first import and reports the
Python allocations by top-level package (the most recent frame outside importlib, so a module's
code objects count for it). Both cost memory (the thread, the traces): compare such runs only
with each other; a snapshot takes ~30 s. ``--env`` sets variables for the agent (e.g.
``MALLOC_ARENA_MAX=2``). Everything listens on 127.0.0.1; every child is stopped on exit.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.probe import Children, get_status, parse_wrk  # noqa: E402
from bench.table import grid  # noqa: E402
from tests.support.agent import to_toml  # noqa: E402
from tests.support.net import free_port  # noqa: E402

MIB = 1024 * 1024
READY_TIMEOUT_S = 30.0
IDLE_S = 1.0
VARIANTS = ("default", "no-admin", "postgres", "bare", "tracing")


# ---------------------------------------------------------------------- measurement
def smaps_groups(pid: int) -> dict[str, dict[str, int]]:
    """RSS and anonymous KiB per kind of mapping, from /proc/PID/smaps."""
    groups: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"rss_kib": 0, "anon_kib": 0})
    name = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split(maxsplit=5)
            path = parts[5].strip() if len(parts) > 5 else ""
            name = _mapping_kind(path)
        elif line.startswith("Rss:"):
            groups[name]["rss_kib"] += int(line.split()[1])
        elif line.startswith("Anonymous:"):
            groups[name]["anon_kib"] += int(line.split()[1])
    return dict(groups)


def _mapping_kind(path: str) -> str:
    if not path:
        return "anon (pymalloc arenas, mmap'd blocks, thread stacks and arenas)"
    if path == "[heap]":
        return "[heap] (glibc main arena)"
    if path.startswith("["):
        return path
    base = path.rsplit("/", 1)[-1]
    if base.startswith("libpython"):
        return "libpython"
    if base.startswith(("libcrypto", "libssl")):
        return "libcrypto + libssl"
    if "site-packages/" in path:
        return "site-packages: " + path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "lib-dynload" in path:
        return "stdlib extension modules"
    return "other shared libraries and files"


def memory(pid: int) -> dict[str, Any]:
    proc = psutil.Process(pid)
    full = proc.memory_full_info()
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        rollup[key] = int(value.split()[0])
    return {
        "rss_mib": full.rss / MIB,
        "uss_mib": full.uss / MIB,
        "pss_mib": full.pss / MIB,
        "anon_mib": rollup["Anonymous"] / 1024,
        "file_mib": (rollup["Rss"] - rollup["Anonymous"]) / 1024,
        "threads": [t.name for t in _threads(pid)],
    }


def _threads(pid: int) -> list[Any]:
    class T:
        def __init__(self, name: str) -> None:
            self.name = name

    return [T(Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()) for tid in sorted(os.listdir(f"/proc/{pid}/task"))]


def parse_importtime(text: str) -> dict[str, Any]:
    """Self µs and module count per top-level package from ``-X importtime`` output."""
    self_us: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if match:
            top = match.group(3).split(".")[0]
            self_us[top] += int(match.group(1))
            count[top] += 1
    return {
        "total_us": sum(self_us.values()),
        "modules": sum(count.values()),
        "packages": [(p, us, count[p]) for p, us in self_us.most_common()],
    }


# ---------------------------------------------------------------------- agent configs
def variant_config(variant: str, upstream_url: str, port: int, admin_port: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}", "drain_delay_s": 0.0, "shutdown_timeout_s": 2.0},
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "upstream": {"url": upstream_url},
        "checks": {"upstream": {"type": "http", "path": "/"}, "database": {"enabled": False}},
    }
    if variant in ("no-admin", "bare"):
        config["admin"]["enabled"] = False
    if variant == "postgres":
        config["checks"]["database"] = {
            "type": "postgres",
            "critical": False,
            "dsn": f"postgresql://agent@127.0.0.1:{free_port()}/agent",
        }
    if variant == "bare":
        config["checks"] = {"upstream": {"enabled": False}, "disk": {"enabled": False}, "database": {"enabled": False}}
    if variant == "tracing":
        config["tracing"] = {"enabled": True, "endpoint": f"http://127.0.0.1:{free_port()}/v1/traces"}
    return config


class Agent:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, ready_s: float, log: Path) -> None:
        self.proc, self.port, self.ready_s, self.log = proc, port, ready_s, log


def start_agent(
    children: Children,
    workdir: Path,
    name: str,
    config: dict[str, Any],
    env_extra: dict[str, str],
    *,
    importtime: bool,
    probe: bool,
) -> Agent:
    config_path = workdir / f"{name}.toml"
    config_path.write_text(to_toml(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OTEL_")) and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(REPO_ROOT), BENCH_RSS_REPORT=str(workdir / f"{name}.report.json"), **env_extra)
    argv = [sys.executable, *(["-X", "importtime"] if importtime else [])]
    argv += ["-m", "bench.rss_agent"] if probe else ["-m", "agent"]
    argv += ["run", "-c", str(config_path)]
    log = workdir / f"{name}.log"
    with log.open("ab") as out, (workdir / f"{name}.stderr").open("wb") as err:
        started = time.monotonic()
        stdin = subprocess.PIPE if probe else subprocess.DEVNULL
        proc = children.popen(argv, cwd=REPO_ROOT, env=env, stdin=stdin, stdout=out, stderr=err)
    port = int(config["server"]["listen"].rsplit(":", 1)[1])
    while time.monotonic() - started < READY_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited {proc.returncode}: {log.read_text()[-2000:]}")
        if get_status(f"http://127.0.0.1:{port}/health/ready", timeout=0.5) == 200:
            return Agent(proc, port, time.monotonic() - started, log)
        time.sleep(0.005)
    children.stop(proc)
    raise TimeoutError(f"agent not ready after {READY_TIMEOUT_S} s: {log.read_text()[-2000:]}")


def probe_report(agent: Agent, workdir: Path, name: str) -> dict[str, Any]:
    path = workdir / f"{name}.report.json"
    assert agent.proc.stdin is not None
    agent.proc.stdin.write(b"report\n")
    agent.proc.stdin.flush()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(path.read_text()))
        time.sleep(0.1)
    raise TimeoutError("no probe report")


# ---------------------------------------------------------------------- upstream
def start_upstream(children: Children, workdir: Path) -> str:
    if shutil.which("nginx"):
        from bench.proxy import start_nginx, upstream_nginx_conf

        port = free_port()
        start_nginx(children, workdir, "upstream", lambda d: upstream_nginx_conf(d, port), port, None)
        return f"http://127.0.0.1:{port}"
    from tests.support.upstream import start_upstream_process

    upstream = start_upstream_process()
    children.procs.append(upstream.process)
    return upstream.url


def load(agent: Agent, seconds: float, connections: int) -> list[dict[str, Any]]:
    """wrk in 4 slices; memory after each, and after 2 s of idle at the end."""
    if shutil.which("wrk") is None:
        raise SystemExit("--load-seconds needs wrk (apt-get install wrk)")
    readings, total = [], 0
    for _ in range(4):
        argv = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds / 4))}s",
            "--latency",
            f"http://127.0.0.1:{agent.port}/",
        ]
        result = parse_wrk(subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout)
        total += result.requests
        readings.append({"requests": total, "rps": result.rps, "errors": result.errors, **memory(agent.proc.pid)})
        print(f"  load: {total:>9,} requests, {result.rps:,.0f} r/s, RSS {readings[-1]['rss_mib']:.1f} MiB", file=sys.stderr)
    time.sleep(2)
    readings.append({"requests": total, "idle_after_s": 2, **memory(agent.proc.pid)})
    return readings


# ---------------------------------------------------------------------- main
def run(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    env_extra = dict(item.split("=", 1) for item in args.env)
    # As installed: pip compiles every module at install time. A checkout run with
    # PYTHONDONTWRITEBYTECODE set would otherwise compile the agent's ~80 modules from source at
    # every start (~150 ms and ~0.5 MiB more), which no installed agent does.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO_ROOT / "agent")], check=True, timeout=120)
    upstream_url = start_upstream(children, workdir)
    results: dict[str, Any] = {
        "meta": {"python": sys.version.split()[0], "env": env_extra, "runs": args.runs, "probe": args.probe},
        "variants": {},
    }
    for variant in args.variants:
        runs = []
        for i in range(args.runs):
            config = variant_config(variant, upstream_url, free_port(), free_port())
            agent = start_agent(children, workdir, f"{variant}-{i}", config, env_extra, importtime=False, probe=args.probe)
            time.sleep(IDLE_S)
            reading = {"ready_s": agent.ready_s, **memory(agent.proc.pid)}
            if i == 0:
                reading["smaps"] = smaps_groups(agent.proc.pid)
                if args.probe:
                    reading["probe"] = probe_report(agent, workdir, f"{variant}-{i}")
                if args.load_seconds and variant == args.variants[0]:
                    reading["load"] = load(agent, args.load_seconds, args.connections)
            children.stop(agent.proc)
            runs.append(reading)
            print(
                f"{variant} #{i}: ready {agent.ready_s * 1000:.0f} ms, "
                f"RSS {reading['rss_mib']:.1f} MiB, USS {reading['uss_mib']:.1f}",
                file=sys.stderr,
            )
        config = variant_config(variant, upstream_url, free_port(), free_port())
        agent = start_agent(children, workdir, f"{variant}-importtime", config, env_extra, importtime=True, probe=False)
        children.stop(agent.proc)
        imports = parse_importtime((workdir / f"{variant}-importtime.stderr").read_text())
        results["variants"][variant] = {
            "runs": runs,
            "median": {
                k: statistics.median(r[k] for r in runs)
                for k in ("ready_s", "rss_mib", "uss_mib", "pss_mib", "anon_mib", "file_mib")
            },
            "imports": imports,
        }
    return results


def render(results: dict[str, Any], top: int) -> str:
    lines = []
    body = []
    for name, v in results["variants"].items():
        m, first = v["median"], v["runs"][0]
        body.append(
            (
                name,
                f"{m['rss_mib']:.1f}",
                f"{m['uss_mib']:.1f}",
                f"{m['pss_mib']:.1f}",
                f"{m['anon_mib']:.1f}",
                f"{m['file_mib']:.1f}",
                str(len(first["threads"])),
                f"{m['ready_s'] * 1000:.0f}",
                str(v["imports"]["modules"]),
                f"{v['imports']['total_us'] / 1000:.0f}",
            )
        )
    header = ("variant", "RSS MiB", "USS", "PSS", "anon", "file", "threads", "ready ms", "modules", "import ms")
    lines += ["idle, 1 s after ready (medians of runs)", *grid(header, body), ""]
    for name, v in results["variants"].items():
        first = v["runs"][0]
        groups = sorted(first["smaps"].items(), key=lambda kv: -kv[1]["rss_kib"])
        rows = [(k, f"{g['rss_kib'] / 1024:.1f}", f"{g['anon_kib'] / 1024:.1f}") for k, g in groups[:12]]
        lines += [
            f"{name}: mappings (first run); threads: {', '.join(first['threads'])}",
            *grid(("mapping", "RSS MiB", "anon MiB"), rows),
            "",
        ]
        pkgs = [(p, f"{us / 1000:.1f}", str(n)) for p, us, n in v["imports"]["packages"][:top]]
        lines += [
            f"{name}: imports (-X importtime, self time per top-level package)",
            *grid(("package", "ms", "modules"), pkgs),
            "",
        ]
        if "probe" in first:
            p = first["probe"]
            lines.append(
                f"{name}: probe: traced {p.get('traced', 0) / MIB:.1f} MiB; glibc heap in use {p['heap_in_use'] / MIB:.1f}, "
                f"free {p['heap_free'] / MIB:.1f}, mmapped {p['mmapped'] / MIB:.1f}; RSS {p['rss'] / MIB:.1f} -> "
                f"gc {p['rss_after_gc'] / MIB:.1f} -> malloc_trim {p['rss_after_trim'] / MIB:.1f}"
            )
            if rows := [(pkg, f"{size / MIB:.2f}") for pkg, size in p.get("by_package", [])[:top]]:
                lines += grid(("allocated by", "MiB"), rows)
            lines.append("")
        for reading in first.get("load", []):
            what = f"after {reading['requests']:,} requests" + (
                " + 2 s idle" if "idle_after_s" in reading else f" ({reading['rps']:,.0f} r/s, {reading['errors']} errors)"
            )
            lines.append(
                f"{name}: {what}: RSS {reading['rss_mib']:.1f} MiB, USS {reading['uss_mib']:.1f}, anon {reading['anon_mib']:.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rss", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="default,no-admin,postgres,bare", type=lambda s: s.split(","))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--load-seconds", type=float, default=0.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    args.probe = args.probe or args.tracemalloc
    if args.tracemalloc:
        args.env.append("BENCH_RSS_TRACEMALLOC=25")
    if unknown := set(args.variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    children = Children()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    try:
        results = run(args, children, workdir)
    except KeyboardInterrupt:
        return 130
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(results, args.top))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v["median"] for k, v in results["variants"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
