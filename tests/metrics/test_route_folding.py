"""Route folding: templates first, then identifiers to {id}, then "other" past max_routes."""

from __future__ import annotations

import random
import string
import time
import uuid

import pytest

from agent.metrics.routes import OTHER, RouteFolder, fold_identifiers, is_identifier

FIXED = ("/health", "/health/live", "/health/ready", "/health/startup", "/metrics")


def folder(templates=(), max_routes=200, **kwargs) -> RouteFolder:
    return RouteFolder(templates, max_routes=max_routes, fixed_routes=FIXED, **kwargs)


@pytest.mark.parametrize(
    "segment",
    [
        "42",
        "0",
        "9223372036854775807",
        str(uuid.uuid4()),
        str(uuid.uuid4()).upper(),
        uuid.uuid4().hex,  # 32 hex, no dashes
        "5f2b8c9e1a3d4b6c7e8f9a0b",  # Mongo ObjectId
        "a1b2c3d4",  # short git sha with a digit
        "01HZX3Q9V8J6K2M4N5P7R8S9TA",  # ULID
        "V1StGXR8_Z5jdHi6B-myT",  # nanoid
        "dGhpcyBpcyBhIHRva2VuMTIz",  # base64
        "2024-01-31",
        "10.0.0.1",
        "1.2.3",
        "alice%40example.com",
        "alice@example.com",
        "x" * 41,
        "abc=",
    ],
)
def test_identifier_segments_fold(segment):
    assert is_identifier(segment)
    assert fold_identifiers(f"/api/v1/things/{segment}/items") == "/api/v1/things/{id}/items"


@pytest.mark.parametrize(
    "segment",
    [
        "api",
        "v1",
        "v2beta1",
        "oauth2",
        "users",
        "plans",
        "organization-memberships",
        "index.html",
        "foo:undelete",
        "cafe",
        "deadbeef",
        "me",
        "",
        "s3",
        "_internal",
        "well-known",
    ],
)
def test_route_words_stay(segment):
    assert not is_identifier(segment)


def test_templates_first_in_order_and_not_counted():
    routes = folder(["/api/v1/plans/{id}", "/api/v1/plans/{id}/items/{item}", "/api/v1/{anything}/{id}"], max_routes=1)
    assert routes.fold("/api/v1/plans/abc") == "/api/v1/plans/{id}"  # a word, but the template says it is an id
    assert routes.fold("/api/v1/plans/7/items/x") == "/api/v1/plans/{id}/items/{item}"
    assert routes.fold("/api/v1/users/7") == "/api/v1/{anything}/{id}"
    assert routes.fold("/api/v1/plans") == "/api/v1/plans"  # templates match whole paths only
    assert routes.fold("/api/v1/plans/") == OTHER  # max_routes=1 used by the previous one
    assert routes.routes == {"/api/v1/plans"}


def test_template_literals_are_not_regexes():
    routes = folder(["/a.b/{id}"])
    assert routes.fold("/a.b/1") == "/a.b/{id}"
    assert routes.fold("/axb/1") == "/axb/{id}"  # folded, not the template


def test_template_must_be_a_path():
    with pytest.raises(ValueError, match="must start with '/'"):
        folder(["api/{id}"])


def test_fixed_routes_query_strings_and_odd_targets():
    routes = folder(max_routes=1)
    for path in FIXED:
        assert routes.fold(path) == path
        assert routes.fold(path + "?verbose=1") == path
    assert routes.routes == frozenset()  # fixed routes do not use up max_routes
    assert routes.fold("/users/42?page=2") == "/users/{id}"
    assert routes.fold("*") == OTHER
    assert routes.fold("example.com:443") == OTHER
    assert routes.fold("") == OTHER
    assert routes.fold("/") == OTHER  # max_routes=1 is used by /users/{id}


def test_other_past_max_routes_and_stable():
    routes = folder(max_routes=3)
    assert [routes.fold(p) for p in ("/a", "/b/1", "/c")] == ["/a", "/b/{id}", "/c"]
    assert routes.fold("/d") == OTHER
    assert routes.fold("/b/99") == "/b/{id}"  # known routes keep working
    assert routes.fold("/a") == "/a"
    assert routes.routes == {"/a", "/b/{id}", "/c"}


def random_path(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-._~%@+="
    depth = rng.randint(1, 6)
    return "/" + "/".join("".join(rng.choices(alphabet, k=rng.randint(1, 24))) for _ in range(depth))


def test_scanner_with_100k_random_paths_adds_at_most_max_routes():
    rng = random.Random(1234)
    routes = folder(["/api/v1/plans/{id}"], max_routes=200, cache_size=1024)
    seen = set()
    started = time.perf_counter()
    for _ in range(100_000):
        seen.add(routes.fold(random_path(rng)))
    took = time.perf_counter() - started
    seen.discard(OTHER)
    assert len(seen) <= 200
    assert len(routes.routes) == 200
    assert len(routes._cache) <= 1024
    # the legitimate routes keep their values after the scan
    assert routes.fold("/api/v1/plans/9") == "/api/v1/plans/{id}"
    assert routes.fold("/health/ready") == "/health/ready"
    assert took < 10, f"folding 100k uncached paths took {took:.1f}s"


def test_cache_is_bounded_and_consistent():
    routes = folder(max_routes=5, cache_size=10)
    first = [routes.fold(f"/items/{i}") for i in range(50)]
    assert set(first) == {"/items/{id}"}
    assert len(routes._cache) <= 10
    assert routes.fold("/items/3") == "/items/{id}"
