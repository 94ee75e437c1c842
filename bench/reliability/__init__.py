"""Reliability figures: soak (leaks), SIGTERM under load, overload, slow-loris and slow bodies.

    python -m bench.reliability [--only soak,sigterm,overload,slowloris]   # every figure, one report
    python -m bench.reliability.soak --soak-requests 20000                 # one figure alone

One module per figure (``soak``, ``sigterm``, ``overload``, ``slowloris``), each runnable alone,
over a shared harness: ``harness`` (the processes: upstreams, agents, client children),
``sampling`` (the agent read from outside), ``noise`` (other processes' CPU), ``wrk``,
``report`` (tables) and ``runner`` (the command line, the run, the output). The asyncio load
generators live in ``clients`` and run as pinned children. These are benchmarks (numbers), not
timed tests. See bench/README.md.
"""
