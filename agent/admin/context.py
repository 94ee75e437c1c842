"""Request ID and trace context for every request, set before anything else runs.

A valid incoming ``X-Request-ID`` (``request_id.pattern``, checked with fullmatch) is kept;
anything else is replaced by a UUID4 and never echoed or logged. A valid ``traceparent`` is
kept, an invalid or missing one replaced. Both land in contextvars for the log formatter, in
``request["request_id"]`` / ``request["traceparent"]`` for handlers, and the request ID on the
response (through :func:`make_request_id_hook`, so streamed and error responses get it too).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from agent.logs import request_id_var, trace_id_var
from agent.tracecontext import new_traceparent, parse_traceparent

REQUEST_ID_KEY = web.RequestKey("request_id", str)
TRACEPARENT_KEY = web.RequestKey("traceparent", str)


def resolve_request_id(incoming: str | None, pattern: re.Pattern[str]) -> tuple[str, bool]:
    """(request id, was it generated)."""
    if incoming is not None and pattern.fullmatch(incoming):
        return incoming, False
    return str(uuid.uuid4()), True


def make_request_context_middleware(*, header: str, pattern: str) -> Middleware:
    compiled = re.compile(pattern)

    @web.middleware
    async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id, _ = resolve_request_id(request.headers.get(header), compiled)
        incoming = request.headers.get("traceparent")
        trace_id = parse_traceparent(incoming)
        if incoming is None or trace_id is None:
            traceparent, trace_id = new_traceparent()
        else:
            traceparent = incoming
        request[REQUEST_ID_KEY] = request_id
        request[TRACEPARENT_KEY] = traceparent
        rid_token = request_id_var.set(request_id)
        tid_token = trace_id_var.set(trace_id)
        try:
            return await handler(request)
        finally:
            request_id_var.reset(rid_token)
            trace_id_var.reset(tid_token)

    return request_context


def make_request_id_hook(header: str) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Puts the request ID on every response, streamed ones included (``on_response_prepare``)."""

    async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
        request_id = request.get(REQUEST_ID_KEY)
        if request_id is not None:
            response.headers[header] = request_id

    return add_request_id
