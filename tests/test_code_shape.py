"""The code stays readable in one sitting: short functions, the proxy's two core classes small."""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[1] / "agent"
MAX_FUNCTION_LINES = 60
MAX_CORE_CLASS_LINES = 400


def definitions() -> list[tuple[str, ast.AST]]:
    found = []
    for path in sorted(AGENT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.append((f"{path.relative_to(AGENT.parent)}:{node.lineno} {node.name}", node))
    return found


def length(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1  # type: ignore[attr-defined, operator]


def test_no_function_in_agent_is_longer_than_60_lines() -> None:
    long = [
        f"{where} ({length(node)} lines)"
        for where, node in definitions()
        if not isinstance(node, ast.ClassDef) and length(node) > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_proxys_connection_and_exchange_stay_small() -> None:
    sizes = {node.name: length(node) for _, node in definitions() if isinstance(node, ast.ClassDef)}  # type: ignore[attr-defined]
    assert 0 < sizes["ClientConnection"] < MAX_CORE_CLASS_LINES
    assert 0 < sizes["Exchange"] < MAX_CORE_CLASS_LINES


EXCHANGE_NAMES = {"exchange", "current", "nxt", "parsing", "starting", "_starting", "_last", "_upgrading"}


def _names_an_exchange(node: ast.expr) -> bool:
    """``exchange``, ``conn.current``, ``self.parsing``...: the proxy's names for an Exchange."""
    if isinstance(node, ast.Name):
        return node.id in EXCHANGE_NAMES
    return isinstance(node, ast.Attribute) and node.attr in EXCHANGE_NAMES


def test_nothing_outside_the_exchange_sets_its_fields_or_calls_its_private_methods() -> None:
    offenders = []
    for path in sorted((AGENT / "proxy").glob("*.py")):
        if path.name == "exchange.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not _names_an_exchange(node.value):
                continue
            if isinstance(node.ctx, ast.Store) or (node.attr.startswith("_") and not node.attr.startswith("__")):
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert offenders == []
