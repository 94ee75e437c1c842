"""The README's error table lists every code the agent can send, with its status."""

from __future__ import annotations

import re
from pathlib import Path

from agent.rules.errors import CLIENT_ERROR, ERROR_CODES, UPSTREAM_ERROR

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_error_code_is_in_the_readme_table_with_its_status() -> None:
    rows = re.findall(r"^\| (\d{3}|any other [45]xx) \| `([A-Z_]+)` \|", README.read_text(), re.MULTILINE)
    documented = {code: status for status, code in rows}
    for entry in ERROR_CODES:
        assert documented.get(entry.code) == str(entry.status), entry.code
    assert documented.get(CLIENT_ERROR.code) == "any other 4xx"
    assert documented.get(UPSTREAM_ERROR.code) == "any other 5xx"
