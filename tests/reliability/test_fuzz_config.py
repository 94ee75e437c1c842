"""Fuzzing the configuration: any TOML file and any ``AGENT_*`` environment gives a valid config or
a one-line ``ConfigError`` naming a key, never another exception, and a DSN password or admin
token never shows in an error, in ``to_public_dict`` or in what ``check-config`` prints.

Goes further than the property in tests/config/test_load.py: arbitrarily nested tables with real and
junk keys, raw (mostly broken) TOML text, random ``AGENT_*`` names with random values, and DSNs
whose passwords hold ``@ : % / ? # [ ] =`` and spaces. Fixed seed (``derandomize=True``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import string
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from agent import cli
from agent.config import CHECK_TYPES, SECTIONS, AgentConfig, CommonCheckKeys, ConfigError, load_config, to_public_dict
from agent.secrets import Secret

MARK = "Pw9xQzK"  # inside every generated password and token; must never be printed
FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# Hypothesis' failure explanation imports mypy_extensions, whose DeprecationWarning the project's
# filterwarnings=error turns into an INTERNALERROR that hides the falsifying example.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


# --------------------------------------------------------------------------- a TOML writer
def toml_key(key: str) -> str:
    return toml_string(key)


def toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(table: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in table.items())


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to itself (the round trip check)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- strategies
def fields(cls: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


SECTION_KEYS = {name: fields(cls) for name, cls in SECTIONS.items()}
CHECK_KEYS = sorted({*fields(CommonCheckKeys), *(k for cls in CHECK_TYPES.values() for k in fields(cls))})
SECRET_KEYS = {("admin", "token"), ("checks", "dsn")}

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
junk_key = st.text(string.ascii_letters + string.digits + "_-. $é\t\"'[]", min_size=1, max_size=12)
scalar = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-2, max_value=70000),
    st.floats(),
    st.floats(min_value=0, max_value=3),
    text,
    st.sampled_from(
        [
            "0.0.0.0:8000",
            "127.0.0.1:0",
            "[::1]:9000",
            ":8001",
            "http://127.0.0.1:1",
            "unix:/x.sock",
            "augment",
            "status",
            "full",
            "200-399",
            "200,204",
            "10.0.0.0/8",
            "postgres",
            "http",
            "tcp",
            "disk",
            "memory",
            "/",
            "/health",
            "INFO",
            "json",
            "https",
            "always",
            "*",
            "^[a-z]+$",
            "(",
            "X-Request-ID",
            "",
        ]
    ),
)
value = st.recursive(
    scalar,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(junk_key, children, max_size=3),
    max_leaves=4,
)

password_junk = st.text("@:%/?#[]= \t&;+~.'\"\\" + string.ascii_letters, max_size=4)
password = st.builds(lambda a, b: a + MARK + b, password_junk, password_junk)


@st.composite
def dsns(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["postgresql", "postgres", "postgresql+asyncpg", "POSTGRES", "mysql", "postgresql+bogus", ""]))
    pw = draw(password)
    pw = draw(st.sampled_from([pw, quote(pw, safe=""), quote(pw, safe="@:/")]))
    user = draw(st.sampled_from(["app", "", "u@x", "us er", "a:b"]))
    host = draw(st.sampled_from(["db", "db:5432", "[::1]:5432", "db:x", "db:99999", "", "db/x"]))
    path = draw(st.sampled_from(["/app", "", "/app?sslmode=require", f"/app?password={MARK}", "/x://y", "/a b", "?x=1#f"]))
    # A missing separator (a typo, an over-encoded "%40") is drawn only for a password without a
    # raw "@": "postgresql://app:x@Pw9db/app" is a well-formed DSN whose password is "x" and whose
    # host is "Pw9db" (asyncpg would connect there). Nothing in the text tells that host, or a
    # path or query made of a password's tail, from a real one, so no masker can hide it.
    at = draw(st.sampled_from(["@", "@@"] if "@" in pw else ["@", "@", "@@", ""]))
    return f"{scheme}://{user}:{pw}{at}{host}{path}" if scheme else f"{user}:{pw}{at}{host}{path}"


def section(name: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from(SECTION_KEYS[name]) | junk_key
    entries = st.dictionaries(keys, value, max_size=4)
    if name == "admin":
        return st.builds(lambda d, t: {**d, "token": t} if t else d, entries, st.none() | password)
    return entries


check_table = st.builds(
    lambda d, dsn, kind: {**d, **({"dsn": dsn} if dsn else {}), **({"type": kind} if kind else {})},
    st.dictionaries(st.sampled_from(CHECK_KEYS) | junk_key, value, max_size=4),
    st.none() | dsns(),
    st.none() | st.sampled_from(sorted(CHECK_TYPES)),
)
tables = st.fixed_dictionaries(
    {},
    optional={
        **{name: section(name) for name in SECTIONS},
        "checks": st.dictionaries(
            st.sampled_from(["database", "upstream", "disk", "db2", "Bad"]) | junk_key, check_table, max_size=3
        ),
        "nonsense": st.dictionaries(junk_key, value, max_size=2),
    },
)

ENV_SECTION = st.sampled_from([*[s.upper() for s in SECTIONS], "CHECKS", "CHECKS_DATABASE", "CHECKS_MY_DB", "NOPE", "SERVICE"])
ENV_KEY = st.sampled_from(sorted({k.upper() for keys in SECTION_KEYS.values() for k in keys} | {k.upper() for k in CHECK_KEYS}))
env_name = st.builds(
    lambda s, k, junk: f"AGENT_{s}_{k}{junk}",
    ENV_SECTION,
    ENV_KEY | st.text(string.ascii_uppercase + "_" + string.digits, min_size=1, max_size=10),
    st.sampled_from(["", "", "_X", "_PORT", "_SERVICE_PORT"]),
)
env_value = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20) | st.sampled_from(
    ["1", "-1", "0", "true", "off", "1e400", "nan", '["a", 1]', "[", "a,b", "http://h:1", "unix:/s", "", " 5 "]
)


@st.composite
def environs(draw: st.DrawFn) -> dict[str, str]:
    env = draw(st.dictionaries(env_name, env_value, max_size=4))
    if draw(st.booleans()):
        env["DATABASE_URL"] = draw(dsns())
    if draw(st.booleans()):
        env[draw(st.sampled_from(["AGENT_CHECKS_DATABASE_DSN", "AGENT_CHECKS_DB2_DSN", "AGENT_ADMIN_TOKEN"]))] = draw(
            dsns() | password | st.builds(lambda p: "tok://" + p, password)
        )
    return env


# --------------------------------------------------------------------------- the property
KNOWN_ROOTS = {*SECTIONS, "checks", "config"}


def leaked(output: str) -> bool:
    return MARK in output or MARK in unquote(output)


def around(output: str) -> str:
    """The text around the first leaked marker, for the failure message."""
    for text_ in (output, unquote(output)):
        at = text_.find(MARK)
        if at >= 0:
            return repr(text_[max(0, at - 120) : at + 60])
    return "(no leak)"


def render_check_config(path: Path, env: dict[str, str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env, clear=True), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["check-config", "--config", str(path)])
    return code, out.getvalue() + err.getvalue()


def verify(path: Path, table: dict[str, Any], env: dict[str, str]) -> None:
    note(f"file: {path.read_bytes()[:2000]!r}")
    note(f"environment: {env!r}")
    try:
        config = load_config(path, env)
    except ConfigError as exc:
        message = str(exc)
        assert exc.key, message
        assert message.startswith(exc.key + ": "), message
        assert "\n" not in message and "\r" not in message, repr(message)
        root = re.split(r"[.\[ ]", exc.key, maxsplit=1)[0]
        assert root in KNOWN_ROOTS or root in table, f"error names no known key: {message!r}"
        assert not leaked(message), f"secret in the error: {message!r}"
        code, printed = render_check_config(path, env)
        assert code == cli.EXIT_CONFIG, printed
    else:
        assert isinstance(config, AgentConfig)
        public = json.dumps(to_public_dict(config), allow_nan=False, ensure_ascii=False)
        code, printed = render_check_config(path, env)
        assert code == cli.EXIT_OK, printed
        assert not leaked(public), f"secret in to_public_dict: {around(public)}"
        assert not leaked(printed), f"secret in check-config output: {around(printed)}"
        assert not leaked(repr(config)), "secret in repr(config)"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


@settings(FUZZ, max_examples=150)
@given(table=tables, env=environs())
def test_any_table_and_environment_gives_a_config_or_a_config_error(
    workdir: Path, table: dict[str, Any], env: dict[str, str]
) -> None:
    text_ = to_toml(table)
    assert same(tomllib.loads(text_), table), "the fuzzer's TOML writer is wrong"
    path = workdir / "agent.toml"
    path.write_text(text_, encoding="utf-8")
    verify(path, table, env)


toml_fragments = st.sampled_from(
    [
        "[server]\n", "[checks.db]\n", "[[checks]]\n", 'listen = "', "listen = 1\n", "= 3\n", '"', "'''", "\n", "[", "]",
        "type = 'postgres'\n", f'dsn = "postgresql://u:{MARK}@h/db"\n', "a.b.c = 1\n", "x = {", "}", "# c\n", "\\u0000",
        "inf", "nan", "1979-05-27T07:32:00Z", "0x1F", "true", "[admin]\n", f'token = "{MARK}"\n', "\ufeff", "\x00",
    ]
)  # fmt: skip


@settings(FUZZ, max_examples=150)
@given(chunks=st.lists(toml_fragments | st.text(max_size=6), max_size=12), env=environs())
def test_any_toml_text_gives_a_config_or_a_config_error(workdir: Path, chunks: list[str], env: dict[str, str]) -> None:
    path = workdir / "raw.toml"
    path.write_bytes("".join(chunks).encode("utf-8", "surrogatepass"))
    try:
        table = tomllib.loads("".join(chunks))
    except (tomllib.TOMLDecodeError, UnicodeError):
        table = {}
    verify(path, table, env)


@settings(FUZZ, max_examples=250)
@given(env=environs())
def test_any_agent_environment_gives_a_config_or_a_config_error(workdir: Path, env: dict[str, str]) -> None:
    path = workdir / "empty.toml"
    path.write_text("", encoding="utf-8")
    verify(path, {}, env)


@settings(FUZZ, max_examples=300)
@given(dsn=dsns())
def test_a_dsn_never_prints_its_password(dsn: str) -> None:
    secret = Secret(dsn)
    for shown in (secret.masked(), str(secret), repr(secret), f"{secret}"):
        assert not leaked(shown), f"{dsn!r} shown as {shown!r}"


def test_dsn_with_space_in_password_and_second_scheme_is_masked(workdir: Path) -> None:
    path = workdir / "leak.toml"
    path.write_text(to_toml({"checks": {"database": {"type": "postgres", "dsn": f"postgresql://app:a {MARK}@db/app?x=a://b"}}}))
    code, printed = render_check_config(path, {})
    assert code == cli.EXIT_OK, printed
    assert not leaked(printed), printed


def test_dsn_with_encoded_at_sign_never_prints_its_password(workdir: Path) -> None:
    path = workdir / "encoded.toml"
    path.write_text(to_toml({"checks": {"database": {"type": "postgres", "dsn": f"postgresql://app:{MARK}%40db:5432/app"}}}))
    code, printed = render_check_config(path, {})
    assert code == cli.EXIT_CONFIG, printed
    assert not leaked(printed), printed


def test_dsn_without_a_scheme_never_prints_its_password_in_the_error(workdir: Path) -> None:
    path = workdir / "empty.toml"
    path.write_text("")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"DATABASE_URL": f"app:{MARK}%40db/app?next=https://x"})
    assert not leaked(str(caught.value)), str(caught.value)


def test_admin_token_holding_a_scheme_separator_is_masked(workdir: Path) -> None:
    path = workdir / "token.toml"
    path.write_text(to_toml({"admin": {"token": f"tok://{MARK}"}}))
    code, printed = render_check_config(path, {})
    assert code == cli.EXIT_OK, printed
    assert not leaked(printed), printed
