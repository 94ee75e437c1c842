"""Plain-text tables and the few number formats and statistics the figures print."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bench.reliability.noise import noise_line

Column = tuple[str, Callable[[dict[str, Any]], str]]  # header, the cell of a row


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a table: first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(b) for b in body)]


def column_table(columns: Sequence[Column], rows: Iterable[dict[str, Any]]) -> list[str]:
    return table([header for header, _ in columns], [tuple(cell(row) for _, cell in columns) for row in rows])


def fmt_counts(d: dict[Any, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: str(kv[0])) if v)


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f} s"


def closing_lines(r: dict[str, Any]) -> list[str]:
    """How every figure's section ends: the agent's warning/error messages, then the noise line."""
    problems = r["agent_log_problems"]
    listed = ", ".join(f"{k} ×{v}" for k, v in problems.items()) if problems else "none"
    return [f"agent log warnings/errors: {listed}", noise_line(r["noise"])]


def rnd(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


def pct(values: list[float], p: float) -> float | None:
    """The ``p`` quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]


def dist(values: list[float]) -> dict[str, Any]:
    """n, p50, p99 and max of latencies in milliseconds."""
    return {
        "n": len(values),
        "p50_ms": rnd(pct(values, 0.50)),
        "p99_ms": rnd(pct(values, 0.99)),
        "max_ms": rnd(max(values) if values else None),
    }


def lsq_slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ``ys`` over ``xs`` (0 when every x is the same)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0
