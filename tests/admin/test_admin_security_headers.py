"""Security headers on the admin listener (SPEC §5): ``security_headers.override`` means one value."""

from __future__ import annotations

from typing import Any

import pytest

from agent.admin.http import Request, Response
from tests.admin.admin_apps import admin_app, make_config


async def same_origin_frames(request: Request) -> Response:
    response = Response(200, b"framed", headers={"X-Frame-Options": "SAMEORIGIN", "X-Powered-By": "handler", "Server": "h/1"})
    response.headers.add("Referrer-Policy", "origin")
    response.headers.add("Referrer-Policy", "unsafe-url")
    return response


async def empty(request: Request) -> Response:
    return Response(204, headers={"X-Frame-Options": "SAMEORIGIN"})


ROUTES = {"/framed": same_origin_frames, "/empty": empty}


async def get(admin_client: Any, override: bool, path: str) -> Any:
    client = await admin_client(admin_app(make_config(security_headers={"override": override}), ROUTES))
    response = await client.get(path)
    await response.read()
    return response


@pytest.mark.parametrize("path", ["/framed", "/empty"])
async def test_override_sends_exactly_the_agents_one_value(admin_client: Any, path: str) -> None:
    response = await get(admin_client, True, path)
    assert response.status in (200, 204)
    assert response.headers.getall("X-Frame-Options") == ["DENY"]
    if path == "/framed":
        assert response.headers.getall("Referrer-Policy") == ["no-referrer"]


@pytest.mark.parametrize("path", ["/framed", "/empty"])
async def test_without_override_the_handlers_value_is_kept(admin_client: Any, path: str) -> None:
    response = await get(admin_client, False, path)
    assert response.headers.getall("X-Frame-Options") == ["SAMEORIGIN"]
    if path == "/framed":
        assert response.headers.getall("Referrer-Policy") == ["origin", "unsafe-url"]
    # Headers the handler did not set are added either way.
    assert response.headers.getall("X-Content-Type-Options") == ["nosniff"]


@pytest.mark.parametrize("override", [False, True])
async def test_fingerprints_are_removed_and_errors_get_the_headers(admin_client: Any, override: bool) -> None:
    framed = await get(admin_client, override, "/framed")
    assert "X-Powered-By" not in framed.headers and "Server" not in framed.headers
    missing = await get(admin_client, override, "/missing")
    assert missing.status == 404
    assert missing.headers.getall("X-Frame-Options") == ["DENY"]
    assert "Server" not in missing.headers


async def test_hsts_only_when_always_over_plain_http(admin_client: Any) -> None:
    """RFC 6797 §7.2: not over plain HTTP unless ``hsts = "always"`` (the admin listener is plain HTTP here)."""
    plain = await admin_client(admin_app(make_config()))
    assert "Strict-Transport-Security" not in (await plain.get("/health")).headers
    always = await admin_client(admin_app(make_config(security_headers={"hsts": "always"})))
    assert (await always.get("/health")).headers.getall("Strict-Transport-Security") == ["max-age=63072000; includeSubDomains"]
