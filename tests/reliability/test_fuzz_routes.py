"""Fuzzing RouteFolder: for any sequence of request targets and any valid template list, folding
never raises, admits at most ``max_routes`` routes (so at most that many + templates + fixed
routes + ``other`` label values ever exist), gives a path the same route every time (also after
the cache was cleared), and is idempotent (a route folds to itself).

Fixed seed (``derandomize=True``).
"""

from __future__ import annotations

import random
import string
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from agent.metrics.http import KNOWN_METHODS, HttpMetrics
from agent.metrics.routes import OTHER, RouteFolder

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Hypothesis' failure explanation imports mypy_extensions, whose DeprecationWarning the project's
# filterwarnings=error turns into an INTERNALERROR that hides the falsifying example.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
FIXED = ("/health", "/health/live", "/health/ready", "/health/startup", "/metrics")

words = st.sampled_from(["api", "v1", "v2beta1", "users", "orders", "items", "oauth2", "index.html", "a:b", "~x", "", ".", ".."])
identifiers = st.one_of(
    st.integers(min_value=0).map(str),
    st.builds(lambda: str(uuid.uuid4())),
    st.text("0123456789abcdef", min_size=8, max_size=40),
    st.text(string.ascii_letters + string.digits + "_-", min_size=16, max_size=30),
    st.sampled_from(["2024-01-31", "10.0.0.1", "alice%40example.com", "x" * 41, "abc=", "{id}", "other"]),
)
segments = st.one_of(words, identifiers, st.text(max_size=12))
paths = st.one_of(
    st.lists(segments, max_size=8).map(lambda s: "/" + "/".join(s)),
    st.builds(lambda p, q: p + "?" + q, st.lists(segments, max_size=4).map(lambda s: "/" + "/".join(s)), st.text(max_size=10)),
    st.sampled_from([*FIXED, "*", "", "/", "//", "http://h/x", "h:80", "/health/", "/metrics?x=1", "/%2e%2e/", OTHER]),
    st.text(max_size=40),
)
template_segment = st.one_of(words, st.sampled_from(["{id}", "{name}", "{}", "{a.b}", "x{y}", "{{z}}", "(", "[a-z]+", "$", "\\"]))
templates = st.lists(st.lists(template_segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s)), max_size=6).map(
    lambda ts: [t for t in ts if not any(c in t for c in " ?#")]  # what config validation lets through
)


@FUZZ
@given(
    template_list=templates,
    max_routes=st.integers(1, 12),
    cache_size=st.sampled_from([1, 3, 8192]),
    sequence=st.lists(paths, max_size=60),
)
def test_folding_is_bounded_stable_and_idempotent(
    template_list: list[str], max_routes: int, cache_size: int, sequence: list[str]
) -> None:
    folder = RouteFolder(template_list, max_routes=max_routes, fixed_routes=FIXED, cache_size=cache_size)
    first: dict[str, str] = {}
    for path in sequence:
        route = folder.fold(path)
        assert isinstance(route, str)
        first.setdefault(path, route)
        assert len(folder.routes) <= max_routes
    allowed = folder.routes | set(FIXED) | set(template_list) | {OTHER}
    for path, route in first.items():
        assert route in allowed, (path, route)
        assert folder.fold(path) == route, f"{path!r} folded to {route!r}, later to {folder.fold(path)!r}"
        assert folder.fold(route) == route, f"not idempotent: {path!r} -> {route!r} -> {folder.fold(route)!r}"
    assert len({folder.fold(p) for p in first}) <= max_routes + len(FIXED) + len(set(template_list)) + 1


def scanner_path(rnd: random.Random) -> str:
    """What a vulnerability scanner asks for: words, ids, junk, at any depth."""
    alphabet = string.ascii_letters + string.digits + "-._~%:@=+é"
    parts = []
    for _ in range(rnd.randint(1, 6)):
        kind = rnd.random()
        if kind < 0.4:
            parts.append("".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(1, 12))))
        elif kind < 0.6:
            parts.append(str(rnd.randint(0, 10**12)))
        else:
            parts.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 20))))
    return "/" + "/".join(parts) + ("?" + str(rnd.random()) if rnd.random() < 0.2 else "")


@settings(FUZZ, max_examples=40)
@given(seed=st.integers(0, 2**32), max_routes=st.integers(1, 50))
def test_a_scanner_never_mints_more_than_max_routes_labels(seed: int, max_routes: int) -> None:
    rnd = random.Random(seed)
    folder = RouteFolder(("/api/v1/plans/{id}",), max_routes=max_routes, fixed_routes=FIXED, cache_size=64)
    labels = {folder.fold(scanner_path(rnd)) for _ in range(2000)}
    assert len(labels - set(FIXED) - {OTHER, "/api/v1/plans/{id}"}) <= max_routes


MAX_ROUTE_CHARS = 512  # far above any real route template


def test_route_labels_have_a_bounded_length() -> None:
    path = "/" + "/".join(["abcdefghij"] * 740)  # 8,140 bytes, every segment a route word
    folder = RouteFolder((), max_routes=200, fixed_routes=FIXED)
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry, folder)
    for i in range(5):
        for method in KNOWN_METHODS:
            metrics.start()
            metrics.observe(method, f"{path}/p{chr(97 + i)}", 404, 0.01)
    assert all(len(r) <= MAX_ROUTE_CHARS for r in folder.routes), max(map(len, folder.routes))
    assert len(generate_latest(registry)) < 1024 * 1024
