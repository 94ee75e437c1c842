"""The upstream every figure proxies to: a private nginx answering by path prefix.

200 / 404 / 500, JSON and HTML, straight from nginx; slow paths and uploads are passed on to
``python -m tests.support.upstream`` (``app_port``), which sleeps as asked and reads bodies.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.proxy import Fail, _nginx_common, _nginx_temp_paths, http_get

# The agent folds the ids in these paths into {id} routes.
FAST_PATH = "/api/v1/users/1/orders/abc123def456"
SLOW_PREFIX = "/api/v1/search/"  # -> tests.support.upstream /slow?delay_s=<query delay_s>
UPLOAD_PREFIX = "/upload/"  # -> nginx reads (buffers) the whole body before answering

HTML_404 = "<!doctype html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"
HTML_500 = "<!doctype html><html><head><title>500</title></head><body><h1>Internal Server Error</h1></body></html>"

# What each kind of path must answer, or the figures mean nothing (checked before any figure).
EXPECTED = (
    (FAST_PATH, 200, "application/json"),
    ("/api/v1/items/1", 404, "application/json"),
    ("/api/v1/reports/1", 500, "application/json"),
    ("/pages/1/view", 404, "text/html"),
    ("/legacy/1/export", 500, "text/html"),
    ("/scan/abc", 404, "text/html"),
    (f"{SLOW_PREFIX}1?delay_s=0.05", 200, "application/json"),
)


def nginx_conf(d: Path, port: int, app_port: int) -> str:
    proxied = 'proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";'
    return (
        _nginx_common(d)
        + f"""http {{
{_nginx_temp_paths(d)}
  access_log off;
  types {{ }}
  default_type application/json;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_max_body_size 2m;
  upstream app {{
    server 127.0.0.1:{app_port};
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = / {{ return 200 '{{"ok":true}}'; }}
    location = /health {{ return 200 '{{"status":"ok"}}'; }}
    location /api/v1/users/ {{ return 200 '{{"id":1,"name":"plan","status":"active"}}'; }}
    location /api/v1/items/ {{ return 404 '{{"detail":"Not Found"}}'; }}
    location /api/v1/reports/ {{ return 500 '{{"detail":"Internal Server Error"}}'; }}
    location /pages/ {{ default_type text/html; return 404 '{HTML_404}'; }}
    location /scan/ {{ default_type text/html; return 404 '{HTML_404}'; }}
    location /legacy/ {{ default_type text/html; return 500 '{HTML_500}'; }}
    location {SLOW_PREFIX} {{ rewrite ^ /slow break; {proxied} }}
    location {UPLOAD_PREFIX} {{ rewrite ^ /upload break; {proxied} }}
  }}
}}
"""
    )


def check_upstream(port: int) -> None:
    """Every kind of path answers what the soak mix expects; raises ``Fail`` otherwise."""
    for path, status, ctype in EXPECTED:
        t0 = time.monotonic()
        got = http_get(port, path, timeout=5)
        if got is None or got[0] != status or not got[1].get("content-type", "").startswith(ctype):
            raise Fail(
                f"upstream {path}: got {got and (got[0], got[1].get('content-type'), got[2][:200])}, expected {status} {ctype}"
            )
        if path.startswith(SLOW_PREFIX) and time.monotonic() - t0 < 0.045:
            raise Fail(f"upstream {path} answered in {time.monotonic() - t0:.3f} s, expected >= 0.05 s")
