"""A parsed request head turned into a :class:`RequestHead`, and the head sent to the app.

Pure: no I/O. llhttp has already refused what aiohttp's C parser refuses (CL+TE, bad
Content-Length, bad chunks, obs-fold, bare LF, CTLs in values, ...). :func:`parse_request_head`
refuses what llhttp lets through and a proxy must not forward: a missing or duplicate Host, a Host
that is not ``uri-host[:port]``, HTTP versions other than 1.0/1.1, any Transfer-Encoding but
exactly ``chunked`` (none on HTTP/1.0), targets that are not origin-form, CONNECT, Upgrade requests
with a body, and bodies over the limit. Ids are resolved first, so every refusal carries them.
"""

from __future__ import annotations

import re
from typing import Final

from agent.proxy.settings import PREFLIGHT, ProxySettings
from agent.proxy.wire import connection_tokens
from agent.rules.ids import Ids, resolve_ids
from agent.rules.security_headers import encode
from agent.tracing import is_sampled

Headers = list[tuple[bytes, bytes, bytes]]  # (name, value, lower-case name)

# RFC 3986 host (reg-name or IP literal) with an optional port (RFC 9112 §3.2).
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]{0,5})?")


class Reject(Exception):
    """A request the agent refuses; carries its status, code and the ids the answer will carry."""

    def __init__(
        self,
        reason: str,
        status: int = 400,
        code: str = "BAD_REQUEST",
        *,
        ids: Ids | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.ids = ids
        self.cause = cause  # set for the agent's own bugs: logged with its traceback


class RequestHead:
    """What the proxy needs of a request once its head is parsed."""

    __slots__ = (
        "accept",
        "chunked_in",
        "connection",
        "content_length",
        "cors",
        "expect_continue",
        "headers",
        "host",
        "http11",
        "https",
        "ids",
        "is_head",
        "keep_alive",
        "local",
        "method",
        "origin",
        "path",
        "sampled",
        "target",
        "tls",
        "upgrade",
        "user_agent",
        "xff",
        "xfh",
        "xfp",
    )

    def __init__(self, method: bytes, target: bytes, http11: bool, headers: Headers) -> None:
        self.method = method
        self.target = target
        self.path = target.split(b"?", 1)[0]
        self.http11 = http11
        self.headers = headers
        self.is_head = method == b"HEAD"
        self.host: bytes | None = None
        self.xff: bytes | None = None
        self.xfp: bytes | None = None
        self.xfh: bytes | None = None
        self.user_agent = b""
        self.accept = b""
        self.origin: bytes | None = None
        self.connection: list[bytes] = []
        self.content_length = -1
        self.chunked_in = False
        self.expect_continue = False
        self.keep_alive = True
        self.https = False  # HTTPS as far as the agent can tell: its own TLS, or a trusted proxy's word
        self.tls = False
        self.local: str | None = None  # answered by the agent itself (health, metrics, preflight)
        self.cors = b""  # CORS lines for the response, when the origin is allowed
        self.upgrade: bytes | None = None  # the Upgrade value, when the request asks for an allowed tunnel
        self.sampled = False  # traced: a span is recorded when it ends
        self.ids: Ids

    @property
    def has_body(self) -> bool:
        return self.chunked_in or self.content_length > 0


def parse_request_head(
    settings: ProxySettings,
    *,
    method: bytes,
    target: bytes,
    version: str,
    headers: Headers,
    upgrade: bool,
    keep_alive: bool,
    trusted: bool,
    tls: bool = False,
) -> RequestHead:
    """The validated head; raises :class:`Reject`. ``trusted``: the peer is a trusted proxy;
    ``tls``: the request arrived over TLS the agent terminated."""
    if version not in ("1.1", "1.0"):
        raise Reject(f"unsupported HTTP version {version[:8]!r}")
    head = RequestHead(method, target, version == "1.1", headers)
    hosts, te_values, request_id, traceparent, tracestate, preflight, upgrade_value = _scan(settings, head)
    head.ids = ids = resolve_ids(settings.request_id, request_id, traceparent, tracestate)
    tracing = settings.tracing
    if tracing is not None:
        sampled = head.sampled = is_sampled(ids.trace_id, ids.flags, tracing.threshold, tracing.trust_incoming)
        if sampled or ids.parent_id is not None:  # else the new traceparent already names the agent's span
            head.ids = ids = _agent_parent(ids, sampled)
    _validate(settings, head, hosts, te_values, upgrade, ids)
    if upgrade and upgrade_value is not None:
        head.upgrade = _allowed_upgrade(settings, head, upgrade_value)
    # llhttp stops after any upgrade request; one the agent does not tunnel ends the connection
    # with its response (agent/proxy/listener.py), and that response must say so, even when the
    # agent answers it itself before the parser stops.
    head.keep_alive = keep_alive and not (upgrade and head.upgrade is None)
    head.tls = tls
    head.https = tls or (trusted and (head.xfp or b"").lower() == b"https")
    head.local = settings.local_paths.get(head.path)
    cors = settings.cors
    if cors.enabled:
        origin = None if head.origin is None else head.origin.decode("latin-1")
        head.cors = encode(cors.response_headers(origin))
        if preflight:
            head.local = PREFLIGHT  # answered by the agent, never forwarded
    return head


def _scan(
    settings: ProxySettings, head: RequestHead
) -> tuple[int, list[bytes], bytes | None, bytes | None, bytes | None, bool, bytes | None]:
    """One pass over the headers: what the proxy reads, in ``head`` and the returned tuple."""
    request_id_lower = settings.request_id_lower
    hosts = 0
    te_values: list[bytes] = []
    request_id = traceparent = tracestate = upgrade = None
    preflight = False
    for _, value, lower in head.headers:
        if lower == b"host":
            hosts += 1
            head.host = value
        elif lower == b"content-length":
            head.content_length = int(value)  # llhttp allows only 1*DIGIT and one field
        elif lower == b"transfer-encoding":
            te_values.append(value)
        elif lower == b"connection":
            head.connection.append(value)
        elif lower == request_id_lower:
            request_id = value
        elif lower == b"traceparent":
            traceparent = value
        elif lower == b"tracestate":
            tracestate = value
        elif lower == b"x-forwarded-for":
            head.xff = value if head.xff is None else head.xff + b", " + value
        elif lower == b"x-forwarded-proto":
            head.xfp = value
        elif lower == b"x-forwarded-host":
            head.xfh = value
        elif lower == b"user-agent":
            head.user_agent = value
        elif lower == b"accept":
            head.accept = value
        elif lower == b"origin":
            head.origin = value
        elif lower == b"access-control-request-method":
            preflight = head.method == b"OPTIONS"
        elif lower == b"expect":
            head.expect_continue = value.lower() == b"100-continue"
        elif lower == b"upgrade":
            upgrade = value
    return hosts, te_values, request_id, traceparent, tracestate, preflight, upgrade


_VALID_HOSTS: Final[set[bytes]] = set()  # hosts seen valid; clients send the same few over and over
_VALID_HOSTS_MAX: Final = 256


def valid_host(host: bytes) -> bool:
    """``uri-host[:port]`` (RFC 9112 §3.2); a host once valid is remembered, up to a bound."""
    if host in _VALID_HOSTS:
        return True
    if _HOST.fullmatch(host) is None:
        return False
    if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
        _VALID_HOSTS.clear()
    _VALID_HOSTS.add(host)
    return True


def _validate(settings: ProxySettings, head: RequestHead, hosts: int, te_values: list[bytes], upgrade: bool, ids: Ids) -> None:
    if head.method == b"CONNECT":
        raise Reject("CONNECT is not supported", 405, "METHOD_NOT_ALLOWED", ids=ids)
    if not head.target.startswith(b"/") and not (head.method == b"OPTIONS" and head.target == b"*"):
        raise Reject("request target must be origin-form (/path?query)", ids=ids)
    if hosts > 1 or (head.http11 and hosts == 0):
        raise Reject("exactly one Host header is required", ids=ids)
    if head.host is not None and not valid_host(head.host):
        raise Reject("Host must be uri-host[:port] (RFC 9112 §3.2)", ids=ids)
    if te_values:
        if len(te_values) > 1 or te_values[0].strip().lower() != b"chunked" or not head.http11:
            raise Reject("only Transfer-Encoding: chunked is accepted, on HTTP/1.1", ids=ids)
        head.chunked_in = True
    if upgrade and head.has_body:
        # llhttp does not parse the body of an upgrade request; forwarding its framing without
        # the body would leave the app waiting for bytes (or eat the next request).
        raise Reject("an Upgrade request cannot carry a body", ids=ids)
    if head.content_length > settings.limits.max_body_bytes:
        raise Reject("request body too large", 413, "PAYLOAD_TOO_LARGE", ids=ids)


def _agent_parent(ids: Ids, sampled: bool) -> Ids:
    """The ``traceparent`` for the app names the agent's span as its parent, with the decision in
    its flags (W3C Trace Context §3.2)."""
    return ids.with_traceparent(f"00-{ids.trace_id}-{ids.span_id}-{'01' if sampled else '00'}")


def _allowed_upgrade(settings: ProxySettings, head: RequestHead, value: bytes) -> bytes | None:
    """The Upgrade value to forward when it names a protocol in ``proxy.upgrades``, else None.

    A tunnel is opened only for ``GET`` on HTTP/1.1 (RFC 6455 §4.1); the body check is in
    :func:`_validate`. Other protocols (``h2c``, say) are forwarded without ``Upgrade``.
    """
    wanted = [token.strip() for token in value.split(b",") if token.strip().split(b"/")[0].lower() in settings.upgrades]
    if not wanted:
        return None
    if head.method != b"GET" or not head.http11:
        raise Reject("an Upgrade request must be GET on HTTP/1.1", ids=head.ids)
    return b", ".join(wanted)


def upstream_request_head(
    head: RequestHead,
    settings: ProxySettings,
    *,
    peer: str | None,
    trusted: bool,
    authority: bytes,
    client_cert: bytes | None = None,
) -> bytes:
    """The head sent to the app: the client's fields minus hop-by-hop ones, plus the agent's own.

    Hop-by-hop fields (and those named in ``Connection``) are dropped before the agent adds
    its fields, so a client can never strip ``X-Request-ID`` or ``X-Forwarded-For``.
    """
    named = connection_tokens(head.connection) if head.connection else frozenset()
    ids = head.ids
    lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (head.method, head.target, head.host or authority)]
    append = lines.append
    skip = settings.request_skip
    skip_trace = ids.tracestate is None
    for name, value, lower in head.headers:
        if lower in skip or lower in named or (skip_trace and lower == b"tracestate"):
            continue
        if not trusted and lower.startswith(b"x-forwarded-"):
            continue
        append(b"%s: %s\r\n" % (name, value))
    append(_forwarded_lines(head, settings, peer=(peer or "").encode(), trusted=trusted))
    if head.upgrade is not None:
        append(b"Connection: Upgrade\r\nUpgrade: %s\r\n" % head.upgrade)
    if client_cert is not None and settings.forward_client_cert:
        append(b"X-Forwarded-Client-Cert: %s\r\n" % client_cert)
    if head.chunked_in:
        append(b"Transfer-Encoding: chunked\r\n\r\n")
    elif head.content_length >= 0:
        append(b"Content-Length: %d\r\n\r\n" % head.content_length)
    else:
        append(b"\r\n")
    return b"".join(lines)


def _forwarded_lines(head: RequestHead, settings: ProxySettings, *, peer: bytes, trusted: bool) -> bytes:
    """``X-Forwarded-*`` (appended to only from a trusted proxy), the request id and ``traceparent``."""
    xff, xfp = head.xff, head.xfp
    forwarded_host = head.xfh if trusted and head.xfh else head.host
    return b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n%s%s: %s\r\ntraceparent: %s\r\n" % (
        xff + b", " + peer if trusted and xff else peer,
        xfp if trusted and xfp else b"https" if head.tls else b"http",
        b"X-Forwarded-Host: %s\r\n" % forwarded_host if forwarded_host else b"",
        settings.request_id_name,
        head.ids.request_id.encode(),
        head.ids.traceparent.encode(),
    )
