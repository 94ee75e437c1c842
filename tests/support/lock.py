"""The image's lock files (scripts/lock.sh writes them): pins, their markers and their hashes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.support import REPO_ROOT

RUNTIME_LOCK = REPO_ROOT / "requirements.lock"
BUILD_LOCK = REPO_ROOT / "requirements-build.lock"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;]+)\s*(?:;\s*(?P<marker>.+?))?$")


@dataclass(frozen=True)
class Pin:
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]


def read_lock(path: Path) -> dict[str, Pin]:
    """Canonical name -> pin; every requirement line must be an exact ``==`` pin."""
    pins: dict[str, Pin] = {}
    for entry in re.sub(r"\\\n", " ", path.read_text()).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        requirement, *options = re.split(r"\s+(?=--)", entry)
        match = _PIN.match(requirement.strip())
        assert match, f"{path.name}: not an exact pin: {entry!r}"
        hashes = tuple(o.removeprefix("--hash=") for o in options if o.startswith("--hash="))
        marker = Marker(match["marker"]) if match["marker"] else None
        pins[canonicalize_name(match["name"])] = Pin(match["version"], marker, hashes)
    return pins
