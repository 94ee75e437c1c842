"""agent.rules.cors: each CORS header exactly once, origins echoed only when allowed."""

from __future__ import annotations

from agent.rules.cors import Cors


def make(origins: tuple[str, ...], credentials: bool = False) -> Cors:
    return Cors(
        allowed_origins=origins,
        allow_credentials=credentials,
        allowed_methods=("GET", "PUT"),
        allowed_headers=("Content-Type", "X-Custom"),
        expose_headers=("X-Request-ID",),
        max_age_s=600,
    )


def names(pairs: tuple[tuple[str, str], ...]) -> list[str]:
    return [n.lower() for n, _ in pairs]


def test_off_without_origins() -> None:
    cors = make(())
    assert not cors.enabled and cors.response_headers("https://a.example") == () and cors.preflight_headers("x") == ()


def test_allowed_origin_is_echoed_once_with_credentials_once() -> None:
    cors = make(("https://a.example",), credentials=True)
    for pairs in (cors.response_headers("https://a.example"), cors.preflight_headers("https://a.example")):
        counted = names(pairs)
        assert len(counted) == len(set(counted)), pairs
        assert dict(pairs)["Access-Control-Allow-Origin"] == "https://a.example"
        assert dict(pairs)["Access-Control-Allow-Credentials"] == "true"
    assert "access-control-allow-methods" in names(cors.preflight_headers("https://a.example"))
    assert "access-control-allow-methods" not in names(cors.response_headers("https://a.example"))


def test_other_origins_get_nothing() -> None:
    cors = make(("https://a.example",))
    assert cors.response_headers("https://b.example") == () and cors.preflight_headers("https://b.example") == ()
    assert cors.response_headers(None) == ()


def test_any_origin_is_star_without_credentials() -> None:
    cors = make(("*",))
    assert dict(cors.response_headers("https://z.example"))["Access-Control-Allow-Origin"] == "*"
    assert "access-control-allow-credentials" not in names(cors.response_headers("https://z.example"))
