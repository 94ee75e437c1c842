"""Plain-text tables for the benchmarks' output: first column left-aligned, the rest right-aligned."""

from __future__ import annotations

from collections.abc import Sequence


def grid(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in body)]


def num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)
