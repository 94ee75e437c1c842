"""Metric names used by PromQL expressions, for checking dashboards and rules against a real scrape.

A small tokenizer, not a parser: it drops strings, label matchers ``{...}``, grouping clauses
(``by (...)``, ``on (...)``, ...), durations ``[5m]`` and numbers; what is left that is not a
function call, keyword or aggregation is a metric name.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
    ]
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group()
        rest = text[match.end() :].lstrip()
        if name in KEYWORDS or rest.startswith("("):
            continue
        before = text[: match.start()].rstrip()
        if before.endswith(("$", ".")) or re.search(r"[0-9]$", before):
            continue  # a Grafana variable ($__rate_interval) or part of a number (1e3)
        names.add(name)
    return names
