"""The one exception configuration code raises: its ``str()`` is one line starting with the full key."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming the full key."""

    def __init__(self, key: str, problem: str) -> None:
        # Keys and values can hold any character (quoted TOML keys): one line, always.
        key, problem = _one_line(key), _one_line(problem)
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")
