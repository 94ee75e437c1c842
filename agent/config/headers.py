"""Default response headers: the security headers added and the fingerprinting headers removed."""

from __future__ import annotations

DEFAULT_SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    # OWASP Secure Headers Project ci/headers_add.json, last_update_utc 2026-07-19, minus
    # Clear-Site-Data (meant for logout responses), Cross-Origin-Embedder-Policy (breaks
    # embedding), Cache-Control (an API's caching is its own business) and HSTS (added only
    # for HTTPS, see hsts). X-XSS-Protection: 0 per OWASP (the auditor it enabled is gone).
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'self'; form-action 'self'; base-uri 'self'; object-src 'none'; "
        "frame-ancestors 'none'; upgrade-insecure-requests",
    ),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    (
        "Permissions-Policy",
        "accelerometer=(), autoplay=(), camera=(), cross-origin-isolated=(), display-capture=(), "
        "encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), keyboard-map=(), "
        "magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), "
        "publickey-credentials-get=(), screen-wake-lock=(), sync-xhr=(self), usb=(), web-share=(), "
        "xr-spatial-tracking=(), clipboard-read=(), clipboard-write=(), gamepad=(), hid=(), "
        "idle-detection=(), interest-cohort=(), serial=(), unload=()",
    ),
    ("X-Permitted-Cross-Domain-Policies", "none"),
    ("X-DNS-Prefetch-Control", "off"),
    ("X-XSS-Protection", "0"),
)

DEFAULT_REMOVED_HEADERS: tuple[str, ...] = (
    # The fingerprinting subset of OWASP's ci/headers_remove.json that a Python/Kubernetes
    # stack emits (same version as above).
    "Server",
    "X-Powered-By",
    "Powered-By",
    "X-Generator",
    "X-Framework",
    "X-Redirect-By",
    "X-AspNet-Version",
    "X-AspNetMvc-Version",
    "X-Php-Version",
    "X-Runtime",
    "X-Version",
    "X-Envoy-Upstream-Service-Time",
    "X-Envoy-Attempt-Count",
    "X-Envoy-External-Address",
    "X-Envoy-Internal",
    "X-Envoy-Original-Dst-Host",
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-ParentSpanId",
    "X-B3-Sampled",
    "X-Datadog-Trace-Id",
    "X-Datadog-Parent-Id",
    "X-Datadog-Sampling-Priority",
    "X-Datadog-Tags",
    "X-Datadog-Origin",
    "X-Kong-Proxy-Latency",
    "X-Kong-Upstream-Latency",
    "X-Kong-Request-Id",
    "X-Kong-Upstream-Status",
    "X-Kubernetes-PF-FlowSchema-UID",
    "X-Kubernetes-PF-PriorityLevel-UID",
    "X-Tyk-Trace-Id",
    "SourceMap",
    "X-SourceMap",
)
