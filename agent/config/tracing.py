"""``[tracing]``: the file's keys win, the standard ``OTEL_*`` variables fill what it leaves unset.

OpenTelemetry's environment (specification ``sdk-environment-variables.md``):
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is), else ``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus
``/v1/traces``); ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``;
``OTEL_SERVICE_NAME``; ``OTEL_TRACES_SAMPLER_ARG`` for the ratio.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping
from typing import Any

from agent.config.env import parse_header_list
from agent.config.errors import ConfigError
from agent.config.fields import is_http_url
from agent.config.schema import TracingConfig
from agent.secrets import Secret

EXTRA_MODULES = ("opentelemetry.sdk", "requests")


def resolve_tracing(tracing: TracingConfig, file_keys: Mapping[str, Any], environ: Mapping[str, str]) -> TracingConfig:
    """``tracing`` with what the file (or ``AGENT_TRACING_*``) left unset taken from ``OTEL_*``, validated."""
    filled: dict[str, Any] = {}
    if "endpoint" not in file_keys:
        if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            filled["endpoint"] = environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        elif environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            filled["endpoint"] = environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if "headers" not in file_keys:
        name = next((n for n in ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") if environ.get(n)), None)
        if name is not None:
            pairs = parse_header_list(environ[name], f"tracing.headers (environment variable {name})")
            filled["headers"] = tuple((k, Secret(v)) for k, v in pairs.items())
    if "service_name" not in file_keys and environ.get("OTEL_SERVICE_NAME"):
        filled["service_name"] = environ["OTEL_SERVICE_NAME"]
    if "sample_ratio" not in file_keys and environ.get("OTEL_TRACES_SAMPLER_ARG"):
        filled["sample_ratio"] = _ratio(environ["OTEL_TRACES_SAMPLER_ARG"])
    resolved = dataclasses.replace(tracing, **filled) if filled else tracing
    _validate(resolved)
    return resolved


def _ratio(text: str) -> float:
    key = "tracing.sample_ratio (environment variable OTEL_TRACES_SAMPLER_ARG)"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(key, f"must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(key, f"must be between 0 and 1, got {value!r}")
    return value


def _validate(tracing: TracingConfig) -> None:
    if not is_http_url(tracing.endpoint):
        example = "http://collector:4318/v1/traces"
        raise ConfigError("tracing.endpoint", f'must be an http(s) URL like "{example}", got {tracing.endpoint!r}')
    for name, _ in tracing.headers:
        if not name or any(c in name for c in " :\r\n\t"):
            raise ConfigError(f"tracing.headers.{name}", "not a valid header name")
    if tracing.enabled and not has_otlp_extra():
        raise ConfigError("tracing.enabled", "needs the OpenTelemetry SDK: pip install 'sidecar-agent[otlp]'")


def has_otlp_extra() -> bool:
    return all(importlib.util.find_spec(module) is not None for module in EXTRA_MODULES)
