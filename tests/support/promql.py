"""PromQL in the shipped monitoring files (the Grafana dashboard, the alert rules) and the metric
names it uses, for checking them against a real scrape.

``metric_names`` is a small tokenizer, not a parser: it drops strings, label matchers ``{...}``, grouping clauses
(``by (...)``, ``on (...)``, ...), durations ``[5m]`` and numbers; what is left that is not a
function call, keyword or aggregation is a metric name.
"""

from __future__ import annotations

import json
import re

from tests.support import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"

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


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
            exprs.append(match.group(1) if match else query)
    return exprs


def rule_exprs() -> list[str]:
    """``expr:`` values of alerts.yml (inline or ``|`` blocks); no YAML library in the test deps."""
    exprs: list[str] = []
    lines = (MONITORING / "alerts.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        key, _, value = line.strip().partition(":")
        if key != "expr" or line.lstrip().startswith("#"):
            continue
        if value.strip() not in ("|", ">", "|-", ">-"):
            exprs.append(value.strip())
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        exprs.append(" ".join(block))
    return exprs
