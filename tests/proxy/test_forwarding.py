"""What the proxy changes on the way through, and what it must leave alone (SPEC §5).

Hop-by-hop stripping both ways, no decompression, no Accept-Encoding, no redirects followed, no
cookies kept, the raw target byte for byte, bodiless HEAD/204/304, multiple Set-Cookie,
X-Forwarded-* trust, request id and traceparent, security headers. All over real sockets to the
real agent and the real upstream app (tests/support/upstream.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re

import pytest

from tests.support.rawhttp import chunked, get, new_request_id, raw_exchange, request
from tests.support.rawupstream import RawConnection, RawRequest
from tests.support.reports import wait_for_log
from tests.support.responses import SECURITY_HEADERS, UUID4
from tests.support.upstream import GZIP_PAYLOAD


def echoed(response) -> dict:
    assert response.status == 200, response.body[:300]
    return response.json()


def upstream_headers(response) -> list[tuple[str, str]]:
    return [(n, v) for n, v in echoed(response)["headers"]]


def names(pairs) -> list[str]:
    return [n.lower() for n, _ in pairs]


def values(pairs, name) -> list[str]:
    return [v for n, v in pairs if n.lower() == name.lower()]


# --------------------------------------------------------------------------- hop-by-hop
async def test_request_hop_by_hop_headers_stripped_before_agent_adds_its_own(main_agent):
    rid = new_request_id()
    response = await get(
        main_agent.port,
        "/echo",
        headers=[
            ("X-Request-ID", rid),
            ("Connection", "keep-alive, X-Request-ID, X-Forwarded-For, traceparent, X-Secret"),
            ("Connection", "X-Other"),
            ("X-Secret", "hop"),
            ("X-Other", "hop2"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("X-End-To-End", "kept"),
        ],
    )
    pairs = upstream_headers(response)
    got = names(pairs)
    for hop in (
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "x-secret",
        "x-other",
    ):
        assert hop not in got, f"{hop} forwarded upstream: {pairs}"
    assert values(pairs, "X-End-To-End") == ["kept"]
    # Named in Connection by the client, but the agent's own values are added after stripping.
    assert values(pairs, "X-Request-ID") == [rid]
    assert values(pairs, "X-Forwarded-For") == ["127.0.0.1"]
    assert len(values(pairs, "traceparent")) == 1
    assert response.header("X-Request-ID") == rid


async def test_response_hop_by_hop_headers_stripped(raw_agent, raw_upstream):
    async def answer(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Connection: X-Hop, X-Request-ID\r\n"
            b"X-Hop: secret\r\n"
            b"Keep-Alive: timeout=5, max=100\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Proxy-Authenticate: Basic realm=x\r\n"
            b"Trailer: X-Checksum\r\n"
            b"Upgrade: h2c\r\n"
            b"TE: trailers\r\n"
            b"X-End-To-End: kept\r\n"
            b"Content-Length: 2\r\n\r\nok"
        )
        return True

    raw_upstream.routes["/hop"] = answer
    response = await get(raw_agent.port, "/hop")
    assert response.status == 200 and response.body == b"ok"
    got = response.names()
    for hop in ("keep-alive", "proxy-connection", "proxy-authenticate", "trailer", "upgrade", "te", "x-hop"):
        assert hop not in got, f"{hop} passed to the client: {response.headers}"
    assert response.all("Connection") in ([], ["close"])
    assert response.header("X-End-To-End") == "kept"
    assert response.header("X-Request-ID")  # the upstream's Connection cannot remove the agent's header


# --------------------------------------------------------------------------- end to end
async def test_response_body_never_decompressed_and_accept_encoding_never_added(main_agent):
    response = await get(main_agent.port, "/gzip")
    assert response.status == 200
    assert response.header("Content-Encoding") == "gzip"
    assert gzip.decompress(response.body) == GZIP_PAYLOAD  # the compressed bytes, as sent
    assert response.header("Content-Length") == str(len(response.body))
    assert response.header("X-Seen-Accept-Encoding") == "-"  # the client sent none, the agent added none


async def test_client_accept_encoding_forwarded_unchanged(main_agent):
    response = await get(main_agent.port, "/echo", headers=[("Accept-Encoding", "br;q=1, zstd")])
    assert values(upstream_headers(response), "Accept-Encoding") == ["br;q=1, zstd"]


async def test_gzip_request_body_forwarded_byte_for_byte(raw_agent, raw_upstream):
    # The raw upstream keeps the exact bytes (an aiohttp app would inflate them itself).
    body = gzip.compress(b"A" * 200_000, mtime=0)
    response = await get(raw_agent.port, "/gz-upload", method="POST", headers=[("Content-Encoding", "gzip")], body=body)
    assert response.status == 200
    ((_, seen),) = raw_upstream.requests_to("/gz-upload")
    assert seen.body == body
    assert seen.header("Content-Encoding") == "gzip"
    assert seen.header("Content-Length") == str(len(body))


async def test_redirects_passed_to_the_client_not_followed(main_agent, upstream):
    before = upstream.requests_served()
    response = await get(main_agent.port, "/redirect")
    assert response.status == 302
    assert response.header("Location") == "/echo"
    assert upstream.requests_served() == before + 1  # /echo was never fetched


async def test_multiple_set_cookie_intact_and_never_replayed(main_agent):
    response = await get(main_agent.port, "/cookies")
    assert response.all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    # Another client (new connection) must not get those cookies sent upstream on its behalf.
    pairs = upstream_headers(await get(main_agent.port, "/echo"))
    assert "cookie" not in names(pairs)
    # And a client's own Cookie header is forwarded as is.
    pairs = upstream_headers(await get(main_agent.port, "/echo", headers=[("Cookie", "mine=1; other=2")]))
    assert values(pairs, "Cookie") == ["mine=1; other=2"]


@pytest.mark.parametrize(
    "target",
    [
        "/echo/a%2Fb/%2e%2e/c;p=1?q=%20x&x=a+b&&y=%7e&z",
        "/echo//double//slash?x=%3A%2F%3f",
        "/echo/%E2%82%AC/~user?empty=&=v&k=%25",
        "/echo?",
    ],
)
async def test_raw_path_and_query_forwarded_byte_for_byte(main_agent, target):
    seen = echoed(await get(main_agent.port, target))
    assert seen["path"] == target


async def test_multiple_same_name_request_headers_kept(main_agent):
    pairs = upstream_headers(await get(main_agent.port, "/echo", headers=[("X-Multi", "1"), ("X-Multi", "2"), ("Accept", "a/b")]))
    assert values(pairs, "X-Multi") == ["1", "2"]


# --------------------------------------------------------------------------- bodiless responses
@pytest.mark.parametrize(
    ("method", "path", "status"),
    # (HEAD /bytes/N is not used: aiohttp's StreamResponse writes the body even for HEAD; see
    # test_misbehaving_upstream for what that does to the pool.)
    [("GET", "/status/204", 204), ("GET", "/status/304", 304), ("HEAD", "/echo", 200), ("HEAD", "/status/404", 404)],
)
async def test_head_204_304_have_no_body_and_keep_the_connection_in_sync(main_agent, method, path, status):
    # The bodiless response is followed on the same connection by a normal one: any stray body
    # byte would corrupt the second response.
    data = request(method, path) + request("GET", "/echo/after")
    ex = await raw_exchange(main_agent.port, data, until_responses=2, head_for=[method == "HEAD", False])
    first, second = ex.responses()
    assert first.status == status
    assert first.body == b""
    assert first.header("Transfer-Encoding") is None
    if method == "HEAD" and status == 200:
        assert int(first.header("Content-Length") or 0) > 0  # HEAD keeps the length the GET would have had
    assert second.status == 200 and second.json()["path"] == "/echo/after"


# --------------------------------------------------------------------------- X-Forwarded-*
async def test_untrusted_peer_x_forwarded_headers_replaced(main_agent):
    pairs = upstream_headers(
        await get(
            main_agent.port,
            "/echo",
            host="public.example",
            headers=[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil.example"),
                ("Forwarded", "for=6.6.6.6;proto=https"),
            ],
        )
    )
    assert values(pairs, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(pairs, "X-Forwarded-Proto") == ["http"]
    assert values(pairs, "X-Forwarded-Host") == ["public.example"]
    assert "forwarded" not in names(pairs)
    assert values(pairs, "Host") == ["public.example"]


async def test_trusted_peer_x_forwarded_for_appended_proto_and_host_kept(trusted_agent):
    pairs = upstream_headers(
        await get(
            trusted_agent.port,
            "/echo",
            host="internal:8000",
            headers=[
                ("X-Forwarded-For", "203.0.113.7, 10.0.0.1"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "api.example.com"),
            ],
        )
    )
    assert values(pairs, "X-Forwarded-For") == ["203.0.113.7, 10.0.0.1, 127.0.0.1"]
    assert values(pairs, "X-Forwarded-Proto") == ["https"]
    assert values(pairs, "X-Forwarded-Host") == ["api.example.com"]


async def test_trusted_peer_without_forwarded_headers(trusted_agent):
    pairs = upstream_headers(await get(trusted_agent.port, "/echo", host="internal:8000"))
    assert values(pairs, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(pairs, "X-Forwarded-Proto") == ["http"]
    assert values(pairs, "X-Forwarded-Host") == ["internal:8000"]


# --------------------------------------------------------------------------- request id / traceparent
VALID_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_valid_request_id_and_traceparent_kept_forwarded_and_logged(main_agent):
    rid = "abc.DEF_123:+=/@-x"
    response = await get(
        main_agent.port, "/echo", headers=[("X-Request-ID", rid), ("traceparent", VALID_TRACEPARENT), ("tracestate", "vendor=1")]
    )
    pairs = upstream_headers(response)
    assert values(pairs, "X-Request-ID") == [rid]
    assert values(pairs, "traceparent") == [VALID_TRACEPARENT]
    assert values(pairs, "tracestate") == ["vendor=1"]
    assert response.header("X-Request-ID") == rid
    lines = wait_for_log(main_agent, lambda r: r.get("request_id") == rid)
    assert lines and all(line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" for line in lines)


@pytest.mark.parametrize(
    "bad_id",
    ["x" * 129, "has space", "<script>alert(1)</script>", "caf\u00e9", 'quo"te', "semi;colon", "tab\there", "\u2028"],
    ids=["too-long", "space", "html", "non-ascii", "quote", "semicolon", "tab", "u2028"],
)
async def test_invalid_request_id_replaced_by_uuid4_never_echoed_or_logged(main_agent, bad_id):
    marker = f"/echo/rid-{hashlib.sha1(bad_id.encode()).hexdigest()[:10]}"
    response = await get(main_agent.port, marker, headers=[("X-Request-ID", bad_id)])
    new_id = response.header("X-Request-ID")
    assert new_id is not None and UUID4.match(new_id), new_id
    assert values(upstream_headers(response), "X-Request-ID") == [new_id]
    assert bad_id.encode("utf-8") not in response.body
    lines = wait_for_log(main_agent, lambda r: r.get("request_id") == new_id)
    assert lines, "no log line for the request"
    raw_log = main_agent.stdout_path.read_bytes()
    for form in {bad_id, bad_id.encode().decode("latin-1")}:  # as sent, and as a latin-1 decode would log it
        for encoded in (form.encode(), json.dumps(form)[1:-1].encode(), json.dumps(form, ensure_ascii=False)[1:-1].encode()):
            assert encoded not in raw_log, f"raw request id {encoded!r} logged"


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # short
        "garbage",
    ],
)
async def test_invalid_traceparent_replaced(main_agent, traceparent):
    rid = new_request_id()
    pairs = upstream_headers(await get(main_agent.port, "/echo", headers=[("X-Request-ID", rid), ("traceparent", traceparent)]))
    sent = values(pairs, "traceparent")
    assert len(sent) == 1 and sent[0] != traceparent
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", sent[0]), sent
    assert sent[0].split("-")[1] != "0" * 32
    lines = wait_for_log(main_agent, lambda r: r.get("request_id") == rid)
    assert lines and lines[0]["trace_id"] == sent[0].split("-")[1]


async def test_tracestate_kept_with_a_valid_traceparent_and_no_traceparent(main_agent):
    pairs = upstream_headers(
        await get(main_agent.port, "/echo", headers=[("traceparent", VALID_TRACEPARENT), ("tracestate", "v=1")])
    )
    assert values(pairs, "tracestate") == ["v=1"]


async def test_tracestate_dropped_when_traceparent_invalid(main_agent):
    # W3C Trace Context: if traceparent cannot be parsed, tracestate is not used; the agent
    # starts a new trace, and the old trace's vendor state must not ride along with it.
    # (listener.py passes ``tracestate if trace_id and traceparent_in``: trace_id is always set.)
    pairs = upstream_headers(await get(main_agent.port, "/echo", headers=[("traceparent", "garbage"), ("tracestate", "v=1")]))
    assert "tracestate" not in names(pairs)


async def test_request_id_generated_when_absent(main_agent):
    response = await get(main_agent.port, "/echo")
    rid = response.header("X-Request-ID")
    assert rid and UUID4.match(rid)
    pairs = upstream_headers(response)
    assert values(pairs, "X-Request-ID") == [rid]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", values(pairs, "traceparent")[0])


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready", "/health/startup"])
async def test_health_answers_carry_request_id_and_security_headers(main_agent, path):
    rid = new_request_id()
    response = await get(main_agent.port, path, headers=[("X-Request-ID", rid)])
    assert response.header("X-Request-ID") == rid
    assert SECURITY_HEADERS and all(h in response.names() for h in SECURITY_HEADERS)
    bad = await get(main_agent.port, path, headers=[("X-Request-ID", "bad id")])
    assert UUID4.match(bad.header("X-Request-ID") or "")


# --------------------------------------------------------------------------- security headers
async def test_security_headers_on_proxied_responses_and_fingerprints_removed(main_agent):
    response = await get(main_agent.port, "/fingerprint")
    assert response.status == 200
    for name in SECURITY_HEADERS:
        assert len(response.all(name)) == 1, f"{name}: {response.all(name)}"
    assert response.all("Content-Security-Policy") == ["default-src 'none'; upstream-own"]  # the app's own kept
    assert "server" not in response.names()
    assert "x-powered-by" not in response.names()
    assert response.header("X-XSS-Protection") in (None, "0")
    assert "strict-transport-security" not in response.names()  # plain HTTP, untrusted


@pytest.mark.parametrize("path", ["/echo", "/status/404", "/status/500", "/html500", "/bytes/10", "/chunked/10"])
async def test_security_headers_on_every_proxied_status(main_agent, path):
    response = await get(main_agent.port, path)
    missing = [h for h in SECURITY_HEADERS if h not in response.names()]
    assert not missing, f"{path} ({response.status}) lacks {missing}"
    assert "server" not in response.names()


async def test_hsts_only_for_https_from_a_trusted_peer(trusted_agent, main_agent):
    https = await get(trusted_agent.port, "/echo", headers=[("X-Forwarded-Proto", "https")])
    assert https.header("Strict-Transport-Security") is not None
    plain = await get(trusted_agent.port, "/echo")
    assert plain.header("Strict-Transport-Security") is None
    spoofed = await get(main_agent.port, "/echo", headers=[("X-Forwarded-Proto", "https")])
    assert spoofed.header("Strict-Transport-Security") is None


async def test_hsts_on_health_answer_for_trusted_https(trusted_agent):
    health = await get(trusted_agent.port, "/health", headers=[("X-Forwarded-Proto", "https")])
    assert health.status == 200
    assert health.header("Strict-Transport-Security") is not None


async def test_hsts_on_agent_error_for_trusted_https(trusted_agent):
    body = chunked(b"x" * (1024 * 1024 + 10))  # over max_body_bytes, chunked: refused mid-stream
    too_big = await get(
        trusted_agent.port,
        "/upload",
        method="POST",
        headers=[("X-Forwarded-Proto", "https"), ("Transfer-Encoding", "chunked")],
        body=body,
    )
    assert too_big.status == 413
    assert too_big.header("Strict-Transport-Security") is not None


# --------------------------------------------------------------------------- error bodies from the app
async def test_upstream_404_json_augmented(main_agent):
    rid = new_request_id()
    response = await get(main_agent.port, "/api/v1/plans/00000000-0000-0000-0000-000000000000", headers=[("X-Request-ID", rid)])
    assert response.status == 404
    body = response.json()
    assert UUID4.match(body["error_id"])
    assert body["detail"] == "Plan not found"
    assert body["error_code"] == "NOT_FOUND"
    assert body["request_id"] == rid
    assert response.header("X-Error-ID") == body["error_id"]
    assert response.header("Content-Length") == str(len(response.body))


async def test_upstream_422_json_augmented(main_agent):
    response = await get(
        main_agent.port, "/api/v1/plans", method="POST", headers=[("Content-Type", "application/json")], body=b"{}"
    )
    assert response.status == 422
    body = response.json()
    assert UUID4.match(body["error_id"])
    assert body["error_code"] == "VALIDATION_ERROR"
    assert isinstance(body["detail"], list)
    assert body["timestamp"]
    assert response.header("X-Error-ID") == body["error_id"]


async def test_upstream_html_500_replaced_by_json(main_agent):
    rid = new_request_id()
    response = await get(main_agent.port, "/html500", headers=[("X-Request-ID", rid)])
    assert response.status == 500
    assert response.header("Content-Type") == "application/json"
    body = response.json()
    assert body["error_code"] == "UPSTREAM_ERROR"
    assert UUID4.match(body["error_id"]) and body["request_id"] == rid
    assert b"html" not in response.body.lower() and b"Traceback" not in response.body
    lines = wait_for_log(
        main_agent,
        lambda r: r.get("error_id") == body["error_id"] and r.get("message") == "upstream error body replaced",
    )
    assert lines and lines[0]["request_id"] == rid


async def test_passthrough_leaves_upstream_error_bodies_alone(passthrough_agent):
    response = await get(passthrough_agent.port, "/html500")
    assert response.status == 500
    assert b"<html>" in response.body
    assert (response.header("Content-Type") or "").startswith("text/html")
    response = await get(passthrough_agent.port, "/api/v1/plans/00000000-0000-0000-0000-000000000000")
    assert response.json() == {"detail": "Plan not found"}


async def test_upstream_json_success_bodies_untouched(main_agent):
    response = await get(main_agent.port, "/status/201")
    assert response.status == 201 and response.json() == {"code": 201}


async def test_every_log_line_is_one_json_object(main_agent):
    # A final sweep over everything this module's agent logged (split on \n only).
    assert main_agent.log_records()


# --------------------------------------------------------------------------- via the raw upstream
def raw_route(raw_upstream, path: str, response: bytes) -> None:
    async def answer(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(response)
        return True

    raw_upstream.routes[path] = answer


async def test_security_headers_set_if_absent_never_duplicated(raw_agent, raw_upstream):
    raw_route(
        raw_upstream,
        "/own-headers",
        b"HTTP/1.1 200 OK\r\nX-Frame-Options: SAMEORIGIN\r\nreferrer-policy: strict-origin\r\n"
        b"X-AspNet-Version: 4.0\r\nX-Runtime: 0.1\r\nContent-Length: 2\r\n\r\nok",
    )
    response = await get(raw_agent.port, "/own-headers")
    assert response.all("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.all("Referrer-Policy") == ["strict-origin"]
    assert "x-aspnet-version" not in response.names() and "x-runtime" not in response.names()
    assert response.header("X-Content-Type-Options") == "nosniff"


async def test_non_json_4xx_passed_unchanged_with_an_error_id(raw_agent, raw_upstream):
    raw_route(
        raw_upstream, "/plain-404", b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot here!"
    )
    response = await get(raw_agent.port, "/plain-404")
    assert response.status == 404 and response.body == b"not here!"
    assert UUID4.match(response.header("X-Error-ID") or "")


async def test_upstream_error_id_kept(raw_agent, raw_upstream):
    body = b'{"detail": "nope", "error_id": "app-chosen-1"}'
    raw_route(
        raw_upstream,
        "/own-error-id",
        b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nX-Error-ID: app-chosen-1\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    response = await get(raw_agent.port, "/own-error-id")
    assert response.status == 409
    assert response.header("X-Error-ID") == "app-chosen-1"
    assert response.json()["error_id"] == "app-chosen-1" and response.json()["error_code"] == "CONFLICT"


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_upstream_html_5xx_replaced_whatever_the_status(raw_agent, raw_upstream, status):
    html = b"<html><body>stack trace</body></html>"
    raw_route(
        raw_upstream,
        f"/html-{status}",
        b"HTTP/1.1 %d Oops\r\nContent-Type: text/html\r\nServer: gunicorn\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (status, len(html), html),
    )
    response = await get(raw_agent.port, f"/html-{status}")
    assert response.status == status
    assert response.json()["error_code"] == "UPSTREAM_ERROR"
    assert b"stack trace" not in response.body and "server" not in response.names()


async def test_large_html_500_never_reaches_the_client(raw_agent, raw_upstream):
    html = b"<html><body>" + b"Traceback line\n" * 6000 + b"</body></html>"  # ~90 KB
    raw_route(
        raw_upstream,
        "/big-html-500",
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(html), html),
    )
    response = await get(raw_agent.port, "/big-html-500")
    assert response.status == 500
    assert b"Traceback" not in response.body
    assert response.json()["error_code"] == "UPSTREAM_ERROR"


async def test_large_json_4xx_passed_through_unchanged(raw_agent, raw_upstream):
    body = json.dumps({"detail": "x" * 100_000}).encode()
    raw_route(
        raw_upstream,
        "/big-json-400",
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    response = await get(raw_agent.port, "/big-json-400")
    assert response.status == 400 and response.body == body
    assert response.header("X-Error-ID")


async def test_gzip_json_error_not_decoded_or_rewritten(raw_agent, raw_upstream):
    body = gzip.compress(b'{"detail": "gone"}', mtime=0)
    raw_route(
        raw_upstream,
        "/gz-404",
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    response = await get(raw_agent.port, "/gz-404")
    assert response.status == 404 and response.body == body
    assert response.header("Content-Encoding") == "gzip"


# --------------------------------------------------------------------------- local answers
async def test_non_get_on_health_is_405_json(main_agent):
    response = await get(main_agent.port, "/health/ready", method="POST", body=b"{}")
    assert response.status == 405
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in (response.header("Allow") or "")
    assert all(h in response.names() for h in SECURITY_HEADERS)
    assert response.header("X-Request-ID")


async def test_head_on_health_has_no_body(main_agent):
    data = request("HEAD", "/health") + request("GET", "/health/live")
    ex = await raw_exchange(main_agent.port, data, until_responses=2, head_for=[True, False])
    head, live = ex.responses()
    assert head.status == 200 and head.body == b"" and int(head.header("Content-Length")) > 0
    assert live.json()["status"] == "alive"


async def test_request_id_of_128_characters_kept(main_agent):
    rid = "a" * 128
    response = await get(main_agent.port, "/echo", headers=[("X-Request-ID", rid)])
    assert response.header("X-Request-ID") == rid
