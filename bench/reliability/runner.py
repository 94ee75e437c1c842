"""One run of one or more figures: the command line, the environment, the output.

Every figure module builds a ``Figure`` and hands it to ``main()``; ``python -m bench.reliability``
hands all four. The output is the same either way: a header line, one table per figure (each
ending with its noise line), the noise over the whole run and, as the very last line of stdout,
one JSON object with every number. Progress goes to stderr. Exit 0; 1 when a figure could not be
measured (its section says ``FAILED:``); 130 after Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.proxy import Fail, _agent_version, _event_loop, _tail, _version, plan_cpus, progress, run_guarded
from bench.reliability.harness import Ctx, raise_fd_limit, start_upstreams
from bench.reliability.noise import Noise, noise_line

TOOLS = ("nginx", "wrk", "ss")


@dataclass(frozen=True, slots=True)
class Figure:
    """A figure: its name (``--only``, its module), its options, and how it is measured (result + ``_table``)."""

    name: str
    doc: str  # the module's docstring: its first paragraph is the --help description
    add_arguments: Callable[[argparse.ArgumentParser], None]
    measure: Callable[[Ctx, argparse.Namespace], dict[str, Any]]
    has_after_readings: bool = False  # reads the agent again after --settle-s idle seconds


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer no smaller than ``minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}")
        return value

    return parse


def parse_args(figures: Sequence[Figure], argv: list[str] | None, prog: str, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for figure in figures:
        figure.add_arguments(parser)
    names = [f.name for f in figures]
    if len(figures) > 1:
        parser.add_argument("--only", default=",".join(names), help=f"comma-separated subset of {','.join(names)}")
    if any(f.has_after_readings for f in figures):
        parser.add_argument(
            "--settle-s",
            type=float,
            default=6.0,
            help="idle time before 'after' measurements (default 6; the pool's idle timeout is 4)",
        )
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temp dir (configs, agent logs)")
    args = parser.parse_args(argv)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()] if len(figures) > 1 else names
    unknown = [x for x in args.only if x not in names]
    if unknown or not args.only:
        parser.error(f"--only: unknown figure(s) {unknown}; choose from {','.join(names)}")
    return args


def main(figures: Sequence[Figure], argv: list[str] | None, *, prog: str, description: str) -> int:
    """Parse, run the chosen figures with every child stopped on any exit, print; the exit code."""
    args = parse_args(figures, argv, prog, description)
    by_name = {f.name: f for f in figures}
    raise_fd_limit()
    agent_cpu, load_cpu = plan_cpus()
    result = run_guarded(
        "bench-reliability-",
        args.keep_workdir,
        lambda children, workdir: run([by_name[name] for name in args.only], args, Ctx(children, workdir, agent_cpu, load_cpu)),
    )
    if isinstance(result, int):
        return result
    return print_result(result, args.json_out)


def main_alone(figure: Figure, argv: list[str] | None = None) -> int:
    """``python -m bench.reliability.<name>``: one figure, the same output as ``--only <name>``."""
    return main([figure], argv, prog=f"python -m bench.reliability.{figure.name}", description=figure.doc.split("\n\n")[0])


def run(figures: Sequence[Figure], args: argparse.Namespace, ctx: Ctx) -> dict[str, Any]:
    """Start the upstreams once, then measure each figure; a figure that fails is reported as such."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install -y nginx wrk iproute2")
    loadavg_before = Path("/proc/loadavg").read_text().split()[0]
    overall = Noise()
    progress("starting the slow upstream (tests.support.upstream) and the upstream nginx ...")
    start_upstreams(ctx)
    assert ctx.nginx is not None
    results: dict[str, Any] = {}
    for figure in figures:
        progress(f"--- {figure.name} ---")
        try:
            results[figure.name] = figure.measure(ctx, args)
        except Fail as exc:
            progress(f"{figure.name} FAILED: {exc}")
            results[figure.name] = {"error": str(exc)[:3000], "_table": f"== {figure.name}: FAILED: {exc}"}
        if ctx.nginx.proc.poll() is not None:
            raise Fail(f"upstream nginx died (exit {ctx.nginx.proc.returncode}):\n{_tail(ctx.nginx.log)}")
    meta = run_meta(args.only, ctx, loadavg_before)
    return {"bench": "sidecar-agent/reliability", "meta": meta, "figures": results, "noise": overall.stop()}


def run_meta(names: list[str], ctx: Ctx, loadavg_before: str) -> dict[str, Any]:
    return {
        "figures": names,
        "agent_cpu": ctx.agent_cpu if ctx.agent_cpu is not None else "unpinned",
        "load_cpu": ctx.load_cpu if ctx.load_cpu is not None else "unpinned",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "event_loop": _event_loop(),
        "agent_version": _agent_version(),
        "wrk": _version(["wrk", "-v"]),
        "nginx": _version(["nginx", "-v"]),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "loadavg_before": loadavg_before,
    }


def print_result(result: dict[str, Any], json_out: Path | None) -> int:
    """The header line, each figure's table, the whole run's noise, then the JSON line; exit code."""
    m = result["meta"]
    print(
        f"sidecar-agent reliability figures — agent on CPU {m['agent_cpu']}, load generators + upstream nginx + slow upstream "
        f"on CPU {m['load_cpu']}; {m['cpus']} CPUs; Python {m['python']} ({m['event_loop']}); agent {m['agent_version']}; "
        f"{m['wrk']}; {m['nginx']}; RLIMIT_NOFILE {m['nofile'][0]}"
    )
    status = 0
    for fig in result["figures"].values():
        print()
        print(fig.pop("_table"))
        if "error" in fig:
            status = 1
    print()
    print(f"whole run: {noise_line(result['noise']).replace(' during this figure', '')}")
    line = json.dumps(result, separators=(",", ":"), default=str)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(line + "\n")
    print(line)
    return status
