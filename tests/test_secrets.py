"""``agent.secrets``: values that never print, DSN masking and the free-text redactor."""

from __future__ import annotations

import dataclasses

import pytest

from agent.config import AdminConfig, PostgresSettings
from agent.secrets import MASK, Redactor, Secret, mask_dsn

TOKEN = "tok-9f2c1e77b3d4"
DSN = "postgresql://agent:Pw-Xy7q!z@db.internal:5432/app?sslmode=require"
DSN_PASSWORD = "Pw-Xy7q!z"


# --- Secret ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [TOKEN, DSN, "two words here"])
def test_secret_never_shows_its_value(value: str) -> None:
    secret = Secret(value)
    renderings = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % secret,  # noqa: UP031 - the old-style formatting path is the point
        "%r" % (secret,),  # noqa: UP031
        format(secret),
        repr([secret]),
        repr({"token": secret}),
        repr(AdminConfig(token=secret)),
        repr(PostgresSettings(dsn=secret)),
    ]
    for text in renderings:
        if "://" in value:
            assert DSN_PASSWORD not in text
        else:
            assert value not in text, text
    assert secret.reveal() == value


def test_secret_masked_forms() -> None:
    assert repr(Secret(TOKEN)) == f"Secret({MASK!r})"
    assert str(Secret(TOKEN)) == MASK
    assert Secret(TOKEN).masked() == MASK
    # Empty stays empty, so "no token configured" is visible as such.
    assert Secret("").masked() == ""
    assert str(Secret("")) == ""
    assert repr(Secret("")) == "Secret('')"
    # A DSN keeps its shape, password masked.
    assert str(Secret(DSN)) == f"postgresql://agent:{MASK}@db.internal:5432/app?sslmode=require"


def test_secret_equality_and_hash_do_not_leak() -> None:
    assert Secret("a1b2c3") == Secret("a1b2c3")
    assert Secret("a1b2c3") != Secret("other")
    assert Secret("a1b2c3") != "a1b2c3"
    assert len({Secret("a1b2c3"), Secret("a1b2c3")}) == 1
    # frozen dataclasses holding secrets compare by value but print masked
    a, b = AdminConfig(token=Secret(TOKEN)), AdminConfig(token=Secret(TOKEN))
    assert a == b
    assert TOKEN not in repr(dataclasses.replace(a, token_env="X"))


def test_secret_parts_of_a_dsn_include_the_password_encoded_and_decoded() -> None:
    dsn = "postgresql://agent:p%40ss%2Fw0rd@db:5432/app"
    parts = Secret(dsn).secret_parts()
    assert dsn in parts
    assert "p%40ss%2Fw0rd" in parts
    assert "p@ss/w0rd" in parts
    assert Secret(TOKEN).secret_parts() == [TOKEN]
    assert Secret("postgresql://agent@db/app").secret_parts() == ["postgresql://agent@db/app"]


@pytest.mark.parametrize(
    "value",
    [
        "postgresql://u@x:pw-tail/db",  # a user name holding "@", the password's separator lost
        "postgresql://agent:pw@db:tail/app",  # what follows the "@" is no host list
        "tok://user:pw-tail@host",  # an admin token holding "://": not a DSN
        "mysql://u:pw@db/app",
    ],
)
def test_secret_without_an_unambiguous_dsn_shape_is_masked_whole(value: str) -> None:
    assert Secret(value).masked() == MASK


# --- mask_dsn --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://u:pw1234@h:5432/db", f"postgresql://u:{MASK}@h:5432/db"),
        ("postgres://u:pw1234@h/db", f"postgres://u:{MASK}@h/db"),
        ("postgresql+asyncpg://u:pw1234@h/db", f"postgresql+asyncpg://u:{MASK}@h/db"),
        ("postgresql://u:p%40ss%3Aw@h/db", f"postgresql://u:{MASK}@h/db"),
        ("postgresql://:pw1234@h/db", f"postgresql://:{MASK}@h/db"),
        ("redis://default:pw1234@cache:6379/0", f"redis://default:{MASK}@cache:6379/0"),
        (
            "postgresql://u:pw1234@h/db?sslmode=require&password=qpw987",
            f"postgresql://u:{MASK}@h/db?sslmode=require&password={MASK}",
        ),
        ("postgresql://u@h/db?sslpassword=kp4ss", f"postgresql://u@h/db?sslpassword={MASK}"),
        ("postgresql://h1:5432,h2:5433/db", "postgresql://h1:5432,h2:5433/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "connect to postgresql://u:pw1234@h/db failed; retry postgresql://v:zz9876@g/db",
            f"connect to postgresql://u:{MASK}@h/db failed; retry postgresql://v:{MASK}@g/db",
        ),
    ],
)
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked
    assert mask_dsn(masked) == masked  # idempotent


@pytest.mark.parametrize(
    ("dsn", "leaked"),
    [
        ("postgresql://agent:correct horse battery@db/app", "horse battery"),
        ("postgresql://agent:p@ss-word-tail@db/app", "ss-word-tail"),
    ],
)
def test_mask_dsn_masks_the_whole_password(dsn: str, leaked: str) -> None:
    masked = mask_dsn(dsn)
    assert leaked not in masked
    assert Secret(dsn).masked() == masked


# --- Redactor --------------------------------------------------------------------------------


def test_redactor_removes_known_secret_values() -> None:
    redact = Redactor([TOKEN])
    out = redact(f"401 for bearer {TOKEN} from 10.0.0.1")
    assert TOKEN not in out
    assert out == f"401 for bearer {MASK} from 10.0.0.1"


def test_redactor_removes_url_encoded_and_decoded_dsn_password() -> None:
    dsn = "postgresql://agent:s%40fe%2Fpw-77@db:5432/app"
    redact = Redactor(Secret(dsn).secret_parts())
    for text in (
        'password authentication failed for user "agent" (tried s@fe/pw-77)',
        "bad password s%40fe%2Fpw-77 in config",
        f"cannot connect to {dsn}",
    ):
        out = redact(text)
        assert "s@fe/pw-77" not in out and "s%40fe%2Fpw-77" not in out, out
        assert MASK in out


def test_redactor_replaces_the_longest_secret_first() -> None:
    redact = Redactor([DSN_PASSWORD, DSN])
    assert redact(f"dsn={DSN}") == f"dsn={MASK}"
    assert redact(f"using {DSN} now") == f"using {MASK} now"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connect failed: password=hunter2x", "hunter2x"),
        ("PASSWORD = hunter2x host=db", "hunter2x"),
        ("passwd:hunter2x", "hunter2x"),
        ("pwd='two words'", "two words"),
        ('password: "quoted value" next', "quoted value"),
        ("token=abc123def", "abc123def"),
        ("Secret = s3kr1t-v", "s3kr1t-v"),
        ("api_key=AKIA1234", "AKIA1234"),
        ("api-key: AKIA1234", "AKIA1234"),
        ("apikey=AKIA1234", "AKIA1234"),
    ],
)
def test_redactor_masks_password_shaped_pairs(text: str, secret: str) -> None:
    out = Redactor([])(text)
    assert secret not in out, out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    ["db_password=hunter2x", "PGPASSWORD=hunter2x", "access_token=hunter2x"],
)
def test_redactor_masks_prefixed_password_keys(text: str) -> None:
    assert "hunter2x" not in Redactor([])(text)


def test_redactor_masks_dsn_userinfo_without_knowing_the_secret() -> None:
    out = Redactor([])("could not connect to postgresql://app:Zq81-pw@db.internal:5432/app: refused")
    assert "Zq81-pw" not in out
    assert f"postgresql://app:{MASK}@db.internal:5432/app" in out


def test_redactor_output_is_one_line() -> None:
    out = Redactor([])("line one\nline two\r\n\tline three\x0bfour  \n")
    assert out == "line one line two line three four"
    assert "\n" not in out and "\r" not in out


def test_redactor_truncates() -> None:
    redact = Redactor([], max_chars=50)
    out = redact("x" * 1000)
    assert len(out) == 50
    assert out.endswith("…")
    assert Redactor([])("y" * 299) == "y" * 299
    assert len(Redactor([])("y" * 5000)) == 300


def test_redactor_redacts_before_truncating() -> None:
    """A secret straddling the cut must not leave its prefix behind."""
    secret = "SECRETVALUE-0123456789"
    out = Redactor([secret], max_chars=50)("x" * 40 + secret + "y" * 40)
    assert "SECRET" not in out.replace(MASK, "")
    assert len(out) <= 50


def test_redactor_ignores_empty_and_tiny_secrets() -> None:
    # "" must not turn every gap into <SECRET>; 1-2 char values would mask ordinary words.
    redact = Redactor(["", "a"])
    assert redact("a plain message") == "a plain message"


@pytest.mark.parametrize(
    "value", ["postgresql://app@db/app", "postgresql://db:5432,db2:5433/app", "postgresql://app@[::1]:5432/app"]
)
def test_a_dsn_without_a_password_and_with_a_clean_host_list_is_shown_as_is(value: str) -> None:
    assert Secret(value).masked() == value and not Secret(value).has_password()
