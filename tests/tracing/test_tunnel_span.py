"""A WebSocket tunnel is one span, from the upgrade request to the tunnel's end: a real client
through a real agent to the real WebSocket app (``tests/support/websocket_app.py``, served from
a thread), exported to a real OTLP receiver."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.client import connect

from tests.support.agent import AgentProcess
from tests.support.otlp import OtlpReceiver
from tests.support.polling import wait_until
from tests.support.threaded_app import ThreadedApp
from tests.support.websocket_app import SESSIONS, make_websocket_app
from tests.tracing.traced import parent_id, split_traceparent, trace_id, traced_config, traceparent

OPEN_S = 0.5


@pytest.fixture
def websocket_app() -> Iterator[ThreadedApp]:
    with ThreadedApp(make_websocket_app()) as app:
        yield app


def test_a_websocket_tunnel_is_one_span(agent_factory: Callable[..., AgentProcess], websocket_app: ThreadedApp) -> None:
    with OtlpReceiver() as receiver:
        agent = agent_factory(traced_config(websocket_app.url, receiver.endpoint, {"sample_ratio": 0.0}))
        trace, parent = trace_id(), parent_id()
        url = agent.url.replace("http://", "ws://") + "/ws?id=traced"
        opened = time.time_ns()
        with connect(url, additional_headers={"traceparent": traceparent(trace, parent, "01")}, open_timeout=5) as ws:
            for text in ("one", "two", "three"):
                ws.send(text)
                assert ws.recv(timeout=5) == text
            time.sleep(OPEN_S)
        closed = time.time_ns()

        [span] = receiver.wait_for_spans(lambda s: s.trace_id == trace)
        time.sleep(1.5)  # one export period: a second span for the same trace would be here by now
        assert [s for s in receiver.spans() if s.trace_id == trace] == [span]
        assert span.name == "GET /ws"
        assert span.kind == "SERVER"
        assert span.parent_span_id == parent
        assert span.attributes["http.response.status_code"] == 101
        assert "error.type" not in span.attributes
        assert span.status == "UNSET"
        assert opened <= span.start_ns and span.end_ns <= closed + 1_000_000_000
        assert span.end_ns - span.start_ns >= OPEN_S * 1e9  # the whole tunnel, not just the handshake

        sessions = websocket_app.app[SESSIONS]
        assert wait_until(lambda: "traced" in sessions)
        [sent] = sessions["traced"].header("traceparent")
        assert split_traceparent(sent) == ("00", trace, span.span_id, "01")
