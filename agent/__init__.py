"""sidecar-agent: health probes, request context, security headers and metrics beside any HTTP API."""

__version__ = "0.1.0"
