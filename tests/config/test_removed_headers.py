"""``security_headers.remove`` defaults to the whole OWASP Secure Headers Project removal list.

The list is pinned here as published (``ci/headers_remove.json``, last_update_utc 2026-07-19
05:44:10, 87 names), independently of the code, so a change to either shows up.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from agent.config import DEFAULT_REMOVED_HEADERS, DEFAULT_SECURITY_HEADERS, build_config, load_config

ROOT = Path(__file__).resolve().parents[2]

OWASP_HEADERS_REMOVE_2026_07_19 = (
    "$wsep",
    "Host-Header",
    "K-Proxy-Request",
    "Liferay-Portal",
    "OracleCommerceCloud-Version",
    "Pega-Host",
    "Powered-By",
    "Product",
    "Server",
    "SourceMap",
    "X-AspNet-Version",
    "X-AspNetMvc-Version",
    "X-Atmosphere-error",
    "X-Atmosphere-first-request",
    "X-Atmosphere-tracking-id",
    "X-B3-ParentSpanId",
    "X-B3-Sampled",
    "X-B3-SpanId",
    "X-B3-TraceId",
    "X-BEServer",
    "X-Backside-Transport",
    "X-CF-Powered-By",
    "X-CMS",
    "X-CalculatedBETarget",
    "X-Cocoon-Version",
    "X-Content-Encoded-By",
    "X-Datadog-Origin",
    "X-Datadog-Parent-Id",
    "X-Datadog-Sampling-Priority",
    "X-Datadog-Tags",
    "X-Datadog-Trace-Id",
    "X-DiagInfo",
    "X-Envoy-Attempt-Count",
    "X-Envoy-External-Address",
    "X-Envoy-Internal",
    "X-Envoy-Original-Dst-Host",
    "X-Envoy-Upstream-Service-Time",
    "X-FEServer",
    "X-Framework",
    "X-Generated-By",
    "X-Generator",
    "X-Gitlab-Meta",
    "X-Jitsi-Release",
    "X-Joomla-Version",
    "X-Kong-Admin-Latency",
    "X-Kong-Client-Latency",
    "X-Kong-Proxy-Latency",
    "X-Kong-Request-Id",
    "X-Kong-Response-Latency",
    "X-Kong-Third-Party-Latency",
    "X-Kong-Total-Latency",
    "X-Kong-Upstream-Latency",
    "X-Kong-Upstream-Status",
    "X-Kubernetes-PF-FlowSchema-UI",
    "X-Kubernetes-PF-PriorityLevel-UID",
    "X-LiteSpeed-Cache",
    "X-LiteSpeed-Purge",
    "X-LiteSpeed-Tag",
    "X-LiteSpeed-Vary",
    "X-Litespeed-Cache-Control",
    "X-Mod-Pagespeed",
    "X-Nextjs-Cache",
    "X-Nextjs-Matched-Path",
    "X-Nextjs-Page",
    "X-Nextjs-Redirect",
    "X-OWA-Version",
    "X-Old-Content-Length",
    "X-OneAgent-JS-Injection",
    "X-Page-Speed",
    "X-Php-Version",
    "X-Powered-By",
    "X-Powered-By-Plesk",
    "X-Powered-CMS",
    "X-Redirect-By",
    "X-Server-Powered-By",
    "X-SourceFiles",
    "X-SourceMap",
    "X-Turbo-Charged-By",
    "X-Tyk-Trace-Id",
    "X-Umbraco-Version",
    "X-Varnish-Backend",
    "X-Varnish-Server",
    "X-Woodpecker-Version",
    "X-dtAgentId",
    "X-dtHealthCheck",
    "X-dtInjectedServlet",
    "X-ruxit-JS-Agent",
)


def lowered(names: tuple[str, ...] | list[str]) -> set[str]:
    return {name.lower() for name in names}


def test_the_default_removes_every_owasp_header() -> None:
    assert len(OWASP_HEADERS_REMOVE_2026_07_19) == 87
    assert lowered(OWASP_HEADERS_REMOVE_2026_07_19) <= lowered(DEFAULT_REMOVED_HEADERS)
    assert lowered(OWASP_HEADERS_REMOVE_2026_07_19) <= lowered(load_config(None, {}).security_headers.remove)


def test_the_default_adds_only_documented_names() -> None:
    extra = lowered(DEFAULT_REMOVED_HEADERS) - lowered(OWASP_HEADERS_REMOVE_2026_07_19)
    assert extra == {"x-kubernetes-pf-flowschema-uid", "x-runtime", "x-version"}
    production = (ROOT / "docs" / "PRODUCTION.md").read_text()
    for name in ("X-Kubernetes-PF-FlowSchema-UID", "X-Runtime", "X-Version", "2026-07-19"):
        assert name in production, name
    assert len(DEFAULT_REMOVED_HEADERS) == len(lowered(DEFAULT_REMOVED_HEADERS)), "duplicates"


def test_the_example_shows_the_default_list() -> None:
    example = tomllib.loads((ROOT / "agent.toml.example").read_text())
    assert tuple(example["security_headers"]["remove"]) == DEFAULT_REMOVED_HEADERS


def test_nothing_the_agent_sends_is_removed() -> None:
    config = load_config(None, {})
    sent = [name for name, _ in DEFAULT_SECURITY_HEADERS]
    sent += ["Strict-Transport-Security", config.request_id.header, "X-Error-ID", *config.cors.expose_headers]
    sent += ["Access-Control-Allow-Origin", "Content-Type", "Content-Length", "Connection", "Retry-After", "Traceparent"]
    assert lowered(sent) & lowered(config.security_headers.remove) == set()


def test_the_request_id_header_is_never_removed() -> None:
    """The agent sends it on every response; the admin listener's hooks would strip it otherwise."""
    config = build_config({"request_id": {"header": "X-Kong-Request-Id"}}, {}, "test")
    assert "x-kong-request-id" not in lowered(config.security_headers.remove)
    assert len(config.security_headers.remove) == len(DEFAULT_REMOVED_HEADERS) - 1
    written = build_config({"security_headers": {"remove": ["Server", "x-request-id"]}}, {}, "test")
    assert written.security_headers.remove == ("Server",)
