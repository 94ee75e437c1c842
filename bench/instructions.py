"""Instructions per proxied request, counted by valgrind: a request-path comparison that noise cannot move.

    python -m bench.instructions [--requests 2000] [--tracing RATIO] [--probe] [--keep FILE]

Runs ``bench.path`` (the real client and upstream legs over in-memory transports) under
``valgrind --tool=callgrind`` twice, with N and 3N requests, and prints (I(3N) - I(N)) / 2N: the
instructions one more request costs, start-up and imports cancelled out. Every thread is counted
(with ``--tracing`` the export thread too, but its batches follow the wall clock, which valgrind
slows ~50x: compare tracing runs' event-loop share with care). The same code, inputs and
``PYTHONHASHSEED`` give the same count to within ~0.1 %, whatever else the machine is doing, which
CPU-time benchmarks on a shared VM cannot (``bench.proxy`` rows scatter by ±5 % between rounds).
Instructions are not time (cache misses, syscalls and the kernel are not in them): use this to
compare two versions of the request path, ``bench.proxy`` to say what a request costs. Needs
valgrind (Debian ``valgrind``); a run takes ~40 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOTAL = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)


def instructions(requests: int, tracing: float | None, probe: bool = False, keep: Path | None = None) -> int:
    """Instructions of one ``bench.path`` process doing ``requests`` requests once (all threads)."""
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", "bench.path"]
        argv += ["--requests", str(requests), "--runs", "1"]
        if tracing is not None:
            argv += ["--tracing", str(tracing)]
        if probe:
            argv.append("--probe")
        env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"), "PYTHONPATH": str(REPO_ROOT)}
        subprocess.run(argv, cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=900)
        if keep is not None:  # for callgrind_annotate
            shutil.copyfile(out, keep)
        match = TOTAL.search(out.read_bytes())
        if match is None:
            raise SystemExit(f"no instruction total in {out}")
        return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="N: the runs make N and 3N requests (default 2000)")
    parser.add_argument("--tracing", type=float, default=None, metavar="RATIO", help="tracing on at this sample_ratio")
    parser.add_argument("--probe", action="store_true", help="GET /health/ready probes instead of proxied requests")
    parser.add_argument("--keep", type=Path, default=None, metavar="FILE", help="keep the 3N run's callgrind output here")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is needed: apt-get install -y valgrind", file=sys.stderr)
        return 1
    small = instructions(args.requests, args.tracing, args.probe)
    large = instructions(3 * args.requests, args.tracing, args.probe, args.keep)
    per_request = (large - small) / (2 * args.requests)
    what = "/health/ready probe" if args.probe else "proxied request"
    print(f"{per_request:,.0f} instructions per {what} (bench.path under callgrind; N = {args.requests})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
