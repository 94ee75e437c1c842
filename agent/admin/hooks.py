"""What every response of the admin listener gets before its head is written: the request id and
the security headers.

Both reach every response: handlers', and the JSON errors of ``agent.admin.errors``. Both are
adapters: the id comes from the request's :class:`~agent.rules.ids.Ids`, the headers from
:class:`agent.rules.security_headers.SecurityHeaders`, applied to ``response.headers`` exactly as
the main listener applies it to bytes.
"""

from __future__ import annotations

from agent.admin.http import Response
from agent.rules.security_headers import SecurityHeaders


def add_request_id(response: Response, header: str, request_id: str) -> None:
    """The request's id on the response, as the one value of ``header``."""
    response.headers.set(header, request_id)


def add_security_headers(response: Response, rule: SecurityHeaders, https: bool) -> None:
    """Fingerprints dropped; each header added unless present, or (``override``) replacing its one value.

    ``https`` is the connection's own: the admin listener trusts no ``X-Forwarded-Proto``.
    """
    headers = response.headers
    dropped = rule.dropped(https)
    # A response has a handful of headers and the dropped set dozens: walk the former.
    for name in {name for name in headers if name.lower() in dropped}:
        headers.popall(name)
    present = frozenset(name.lower() for name in headers) & rule.watched
    for name, value in rule.added(present, https):
        headers.add(name, value)
