"""The asyncio load generators of the reliability figures, each run as a pinned child process.

    python -m bench.reliability.clients '{"mode": "sigterm" | "overload" | "probe" | "trickle", ...}'

``keepalive`` (mode ``sigterm``), ``burst`` (``overload``), ``prober`` (``probe``) and ``trickle``,
over ``wire`` (HTTP/1.1 on raw asyncio streams). Each prints its progress markers (``STARTED`` /
``RAMPED``) and, at the end, its result as one JSON line on stdout.
"""
