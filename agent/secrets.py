"""Secrets that never print, and the redactor every outgoing message passes through."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "<SECRET>"


class Secret:
    """A string that prints as ``<SECRET>``; ``reveal()`` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        """For display: empty stays empty, a PostgreSQL DSN with a well-formed host list keeps its
        shape (a password, in the user info or the query, masked), anything else is masked whole."""
        if not self._value:
            return ""
        if _has_dsn_shape(self._value) or _is_dsn_without_user_password(self._value):
            return mask_dsn(self._value)
        return MASK

    def has_password(self) -> bool:
        """A DSN with a password in its user info or its query (``?password=``)."""
        return bool(_dsn_password(self._value)) or _QUERY_PW.search(self._value) is not None

    def secret_parts(self) -> list[str]:
        """The values a redactor must remove: the whole value, and a DSN's password."""
        parts = [self._value]
        if "://" in self._value:
            password = _dsn_password(self._value)
            if password:
                parts.extend({password, unquote(password)})
        return parts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self._value else "Secret('')"

    __str__ = masked


def _dsn_password(dsn: str) -> str:
    userinfo, at, _ = dsn.partition("://")[2].rpartition("@")
    if not at:
        return ""
    _, colon, password = userinfo.partition(":")
    return password if colon else ""


_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# In free text a password ends at the last "@" of its whitespace-free run (greedy \S*).
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>\S*)@")
# db_password=..., PGPASSWORD=..., access_token: ... (any prefix before the key word).
_KEYVALUE = re.compile(r"(?i)(\w*(?:password|passwd|pwd|token|secret|api[_-]?key))(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)")
_QUERY_PW = re.compile(r"(?i)([?&](password|passwd|sslpassword|token)=)[^&\s]*")
# The DSNs the agent holds are PostgreSQL ones (config normalises the scheme); any other value
# holding "://", an admin token such as "tok://a:b@c" included, is not a DSN and is masked whole.
_PG_SCHEME = re.compile(r"(?i)postgres(?:ql)?(?:\+[a-z0-9]+)?://")
# libpq's host list: host[:port], comma-separated; a host is a reg-name or an [IPv6] literal, and
# may be empty (the socket directory then comes from ?host=).
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(?::[0-9]*)?"
_HOST_LIST = re.compile(rf"{_HOST}(?:,{_HOST})*")
# Shown whole only with numeric ports: "app:" or "app:pw" may be a password that lost its "@".
_STRICT_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(?::[0-9]+)?"
_STRICT_HOST_LIST = re.compile(rf"{_STRICT_HOST}(?:,{_STRICT_HOST})*")


def _has_dsn_shape(value: str) -> bool:
    """True for ``postgresql://user:password@hosts[/db][?query]``: the password (up to the last
    "@", so an unencoded "@" in it is masked too) is followed by a well-formed host list.

    Without a password before that "@", or without a host list after it, the text after the "@"
    may be the rest of a password typed without its separator (``postgresql://u@x:pw-tail/db``,
    a user name holding "@"): such a value is masked whole. A password holding "@" that lost its
    separator *and* leaves a valid host (``postgresql://u:p@ss-tail/db``) cannot be told from a
    real DSN by its text.
    """
    scheme = _PG_SCHEME.match(value)
    if scheme is None:
        return False
    userinfo, at, hostpart = value[scheme.end() :].rpartition("@")
    if not at or ":" not in userinfo:
        return False
    authority = re.split(r"[/?#]", hostpart, maxsplit=1)[0]
    return _HOST_LIST.fullmatch(authority) is not None


def _is_dsn_without_user_password(value: str) -> bool:
    """``postgresql://user@hosts/db`` or ``postgresql://hosts/db``: no ":" before the last "@",
    so no password there, and a well-formed host list after it (a password typed without its
    separator would not leave one behind)."""
    scheme = _PG_SCHEME.match(value)
    if scheme is None:
        return False
    userinfo, _, hostpart = value[scheme.end() :].rpartition("@")
    if ":" in userinfo:
        return False
    authority = re.split(r"[/?#]", hostpart, maxsplit=1)[0]
    return _STRICT_HOST_LIST.fullmatch(authority) is not None


def mask_dsn(dsn: str) -> str:
    """``postgresql://u:pw@h/db?password=x`` -> ``postgresql://u:<SECRET>@h/db?password=<SECRET>``.

    For a whole DSN the password runs to the last "@" (an unencoded "@" or space in a password
    is still masked whole).
    """
    if not _SCHEME.match(dsn):  # free text: best effort
        return _QUERY_PW.sub(lambda m: m.group(1) + MASK, _USERINFO.sub(rf"\g<scheme>\g<user>:{MASK}@", dsn))
    scheme, _, rest = dsn.partition("://")
    if "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        if ":" in userinfo:
            rest = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostpart}"
        dsn = f"{scheme}://{rest}"
    return _QUERY_PW.sub(lambda m: m.group(1) + MASK, dsn)


class Redactor:
    """Removes known secret values and anything password-shaped from free text."""

    __slots__ = ("_secrets", "max_chars")

    def __init__(self, secrets: Iterable[str], *, max_chars: int = 300) -> None:
        # Longest first, so a DSN is replaced whole before its password alone is looked for.
        self._secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)
        self.max_chars = max_chars

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _USERINFO.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
        text = _QUERY_PW.sub(lambda m: m.group(1) + MASK, text)
        text = _KEYVALUE.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
        text = " ".join(text.split())  # one line, whatever the source
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1] + "…"
        return text
