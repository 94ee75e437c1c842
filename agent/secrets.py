"""Secrets that never print, and the redactor every outgoing message passes through."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "<SECRET>"


class Secret:
    """A string that prints as ``<SECRET>``; ``reveal()`` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        """For display: empty stays empty, a DSN keeps its shape with the password masked."""
        if not self._value:
            return ""
        if "://" in self._value:
            return mask_dsn(self._value)
        return MASK

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
    try:
        netloc = urlsplit(dsn).netloc
    except ValueError:
        return ""
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return ""
    _, colon, password = userinfo.partition(":")
    return password if colon else ""


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KEYVALUE = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api[_-]?key)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)")
_QUERY_PW = re.compile(r"(?i)([?&](password|passwd|sslpassword|token)=)[^&\s]*")


def mask_dsn(dsn: str) -> str:
    """``postgresql://u:pw@h/db?password=x`` -> ``postgresql://u:<SECRET>@h/db?password=<SECRET>``."""
    return _QUERY_PW.sub(lambda m: m.group(1) + MASK, _USERINFO.sub(rf"\g<scheme>\g<user>:{MASK}@", dsn))


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
        text = mask_dsn(text)
        text = _KEYVALUE.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
        text = " ".join(text.split())  # one line, whatever the source
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1] + "…"
        return text
