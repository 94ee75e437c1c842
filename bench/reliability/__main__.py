"""Reliability figures: soak (leaks), SIGTERM under load, overload, slow-loris and slow bodies.

    python -m bench.reliability [--soak-requests 1000000] [--only soak,sigterm,overload,slowloris]

Starts a static upstream (a private nginx answering 200 / 404 / 500, JSON and HTML, by path
prefix; slow paths are passed on to ``tests.support.upstream``, which sleeps as asked) and, for
each figure, a fresh agent (``python -m agent run -c <tmp toml>``, pinned to one CPU with
``taskset``). Load comes from wrk with a Lua script (soak, normal traffic) and from small asyncio
clients run as ``python -m bench.reliability.clients <json>`` (SIGTERM, overload, trickle), all
pinned to the other CPU. Prints a table per figure and, as the very last line, one JSON object
with every number. Each figure also runs alone: ``python -m bench.reliability.soak`` etc.

Everything listens on 127.0.0.1; every wait is bounded; every child process is stopped on exit,
including on Ctrl-C and SIGTERM, and told to exit (parent-death signal) if this process is
SIGKILLed.
"""

from __future__ import annotations

from bench.reliability import overload, runner, sigterm, slowloris, soak

FIGURES = (soak.FIGURE, sigterm.FIGURE, overload.FIGURE, slowloris.FIGURE)


def main(argv: list[str] | None = None) -> int:
    return runner.main(FIGURES, argv, prog="python -m bench.reliability", description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())
