"""agent.rules.access: the access-log event's keys and clipping."""

from __future__ import annotations

from agent.rules.access import access_event

KEYS = [
    "timestamp", "level", "logger", "message", "request_id", "trace_id", "method", "path", "status",
    "duration_ms", "bytes_sent", "client_ip", "user_agent", "upstream_ms",
]  # fmt: skip


def event(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "request_id": "r",
        "trace_id": "t",
        "method": "GET",
        "path": "/x",
        "status": 200,
        "duration_s": 0.0012345,
        "bytes_sent": 10,
        "client_ip": "127.0.0.1",
        "user_agent": "curl",
        "upstream_s": 0.001,
    }
    fields.update(overrides)
    return access_event(**fields)  # type: ignore[arg-type]


def test_keys_and_units() -> None:
    e = event()
    assert list(e) == KEYS
    assert e["message"] == "request completed" and e["logger"] == "agent.access"
    assert e["duration_ms"] == 1.234 and e["upstream_ms"] == 1.0


def test_client_values_are_clipped_and_aborted_is_marked() -> None:
    e = event(method="X" * 100, path="/" * 5000, user_agent="u" * 5000, upstream_s=None, aborted=True)
    assert len(e["method"]) == 16 and len(e["path"]) == 512 and len(e["user_agent"]) == 512  # type: ignore[arg-type]
    assert e["upstream_ms"] is None and e["aborted"] is True
