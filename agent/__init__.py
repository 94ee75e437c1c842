"""sidecar-agent: health probes, request context, security headers and metrics beside any HTTP API."""

__version__ = "0.1.0"

from agent import compiled as _compiled  # decides compiled vs pure Python before the request path loads

_compiled.choose()
