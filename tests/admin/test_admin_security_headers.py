"""Security headers on the admin listener (SPEC §5): ``security_headers.override`` means one value."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from tests.admin.admin_apps import admin_app, make_config


async def same_origin_frames(request: web.Request) -> web.StreamResponse:
    response = web.Response(text="framed", headers={"X-Frame-Options": "SAMEORIGIN", "X-Powered-By": "handler"})
    response.headers.add("Referrer-Policy", "origin")
    response.headers.add("Referrer-Policy", "unsafe-url")
    return response


async def streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"X-Frame-Options": "SAMEORIGIN"})
    await response.prepare(request)
    await response.write(b"chunk")
    return response


ROUTES = {"/framed": same_origin_frames, "/streamed": streamed}


async def get(aiohttp_client: Any, override: bool, path: str) -> Any:
    client = await aiohttp_client(admin_app(make_config(security_headers={"override": override}), ROUTES))
    response = await client.get(path)
    await response.read()
    return response


@pytest.mark.parametrize("path", ["/framed", "/streamed"])
async def test_override_sends_exactly_the_agents_one_value(aiohttp_client: Any, path: str) -> None:
    response = await get(aiohttp_client, True, path)
    assert response.status == 200
    assert response.headers.getall("X-Frame-Options") == ["DENY"]
    if path == "/framed":
        assert response.headers.getall("Referrer-Policy") == ["no-referrer"]


@pytest.mark.parametrize("path", ["/framed", "/streamed"])
async def test_without_override_the_handlers_value_is_kept(aiohttp_client: Any, path: str) -> None:
    response = await get(aiohttp_client, False, path)
    assert response.headers.getall("X-Frame-Options") == ["SAMEORIGIN"]
    if path == "/framed":
        assert response.headers.getall("Referrer-Policy") == ["origin", "unsafe-url"]
    # Headers the handler did not set are added either way.
    assert response.headers.getall("X-Content-Type-Options") == ["nosniff"]


@pytest.mark.parametrize("override", [False, True])
async def test_fingerprints_are_removed_and_errors_get_the_headers(aiohttp_client: Any, override: bool) -> None:
    framed = await get(aiohttp_client, override, "/framed")
    assert "X-Powered-By" not in framed.headers and "Server" not in framed.headers
    missing = await get(aiohttp_client, override, "/missing")
    assert missing.status == 404
    assert missing.headers.getall("X-Frame-Options") == ["DENY"]
    assert "Server" not in missing.headers


async def test_hsts_only_when_always_over_plain_http(aiohttp_client: Any) -> None:
    """RFC 6797 §7.2: not over plain HTTP unless ``hsts = "always"`` (the admin listener is plain HTTP here)."""
    plain = await aiohttp_client(admin_app(make_config()))
    assert "Strict-Transport-Security" not in (await plain.get("/health")).headers
    always = await aiohttp_client(admin_app(make_config(security_headers={"hsts": "always"})))
    assert (await always.get("/health")).headers.getall("Strict-Transport-Security") == ["max-age=63072000; includeSubDomains"]
