"""Request ids and trace context on the admin listener: the first middleware, over ``agent.rules.ids``.

The ids are resolved by the same rule as on the main listener (:func:`~agent.rules.ids.resolve_ids_text`:
a valid incoming ``request_id.header`` and ``traceparent`` are kept, anything else made new, a
non-ASCII value never kept). They land in ``request[IDS_KEY]`` for handlers and the other
adapters, and in the log contextvars for every line written while the request is handled.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from agent.logs import request_id_var, trace_id_var
from agent.rules.ids import Ids, RequestIdRule, resolve_ids_text

IDS_KEY = web.RequestKey("ids", Ids)


def request_id_of(request: web.Request) -> str | None:
    """The request's id once the middleware ran (None for a request aiohttp answered before it)."""
    ids = request.get(IDS_KEY)
    return ids.request_id if ids is not None else None


def make_request_context_middleware(rule: RequestIdRule) -> Middleware:
    @web.middleware
    async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        ids = resolve_ids_text(rule, headers.get(rule.header), headers.get("traceparent"), headers.get("tracestate"))
        request[IDS_KEY] = ids
        rid_token = request_id_var.set(ids.request_id)
        tid_token = trace_id_var.set(ids.trace_id)
        try:
            return await handler(request)
        finally:
            request_id_var.reset(rid_token)
            trace_id_var.reset(tid_token)

    return request_context
