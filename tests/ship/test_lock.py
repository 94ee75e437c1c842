"""The image's lock files cover pyproject.toml: every runtime dependency (and the [fast] and [otlp] extras) and
the build requirements (setuptools, and mypy for mypyc) pinned exactly, with hashes, for every supported Python on Linux."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import REPO_ROOT
from tests.support.lock import BUILD_LOCK, RUNTIME_LOCK, Pin, read_lock

SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
PLATFORMS = ("x86_64", "aarch64")


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _linux(python: str, machine: str, extra: str = "") -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": extra,
    }


def _assert_covered(requirements: list[str], pins: dict[str, Pin], extra: str = "") -> None:
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        for python in SUPPORTED_PYTHONS:
            for machine in PLATFORMS:
                env = _linux(python, machine, extra)
                if requirement.marker is not None and not requirement.marker.evaluate(env):
                    continue
                assert name in pins, f"{text!r} is not in the lock: run scripts/lock.sh"
                pin = pins[name]
                assert pin.marker is None or pin.marker.evaluate(env), f"{name} is locked only for {pin.marker}"
                assert requirement.specifier.contains(pin.version, prereleases=True), (
                    f"{name}=={pin.version} does not satisfy {text!r}: run scripts/lock.sh"
                )


def test_runtime_lock_covers_the_dependencies_and_the_fast_extra(pyproject: dict[str, Any]):
    pins = read_lock(RUNTIME_LOCK)
    _assert_covered(pyproject["project"]["dependencies"], pins)
    _assert_covered(pyproject["project"]["optional-dependencies"]["fast"], pins, extra="fast")
    assert canonicalize_name(pyproject["project"]["name"]) not in pins, "the agent itself is installed with --no-deps"


def test_runtime_lock_covers_the_otlp_extra_so_the_image_can_trace(pyproject: dict[str, Any]):
    _assert_covered(pyproject["project"]["optional-dependencies"]["otlp"], read_lock(RUNTIME_LOCK), extra="otlp")


def test_build_lock_covers_the_build_requirements(pyproject: dict[str, Any]):
    """setuptools and mypy (mypyc compiles the request path); pip's --require-hashes in the image's
    build also refuses any dependency of theirs that the lock does not pin."""
    pins = read_lock(BUILD_LOCK)
    _assert_covered(pyproject["build-system"]["requires"], pins)
    assert {"setuptools", "mypy"} <= set(pins)


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_every_pin_has_sha256_hashes_and_says_how_to_refresh(lock):
    pins = read_lock(lock)
    assert pins
    for name, pin in pins.items():
        assert pin.hashes and all(h.startswith("sha256:") and len(h) == 7 + 64 for h in pin.hashes), name
    assert "scripts/lock.sh" in lock.read_text().split("\n", 3)[1], "the header names the refresh command"


def test_the_readme_says_how_to_refresh_the_lock():
    assert "scripts/lock.sh" in (REPO_ROOT / "README.md").read_text()
