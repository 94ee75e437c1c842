"""The image built once per session with podman, and a summary of what was built and measured.

Skipped (with the reason) where podman cannot run containers; under CI (``CI`` set) that is a
failure instead, since .ci/run installs everything these tests need.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.image import BuiltImage, build_image, prepare_base, remove_image
from tests.support.podman import unavailable_reason
from tests.support.postgres import keep_traversable

REPORT_KEY = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def container_report(request: pytest.FixtureRequest) -> list[str]:
    """Lines for the end-of-run summary (the base used, image size, timings)."""
    return request.config.stash.setdefault(REPORT_KEY, [])


@pytest.fixture(scope="session")
def tmp_root_stays_traversable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's PostgreSQL runs as ``postgres`` below ``/tmp/pytest-of-<user>``, which any
    other pytest session on the machine chmods back to 0700 (tests/reliability/conftest.py says
    more): keep it traversable while the containers use that cluster."""
    with keep_traversable(tmp_path_factory.getbasetemp().parent):
        yield


@pytest.fixture(scope="session")
def agent_image(container_report: list[str]) -> Iterator[BuiltImage]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"container tests cannot run under CI: {reason}")
        pytest.skip(reason)
    base = prepare_base()
    container_report.append(f"base: {base.note}")
    image = build_image(base)
    mb = 1_000_000
    container_report.append(
        f"image: {image.size_bytes / mb:.0f} MB uncompressed ({(image.size_bytes - image.base_size_bytes) / mb:.0f} MB "
        f"on top of the {image.base_size_bytes / mb:.0f} MB base), PYTHON_VERSION={base.python_version}, "
        f"built in {image.build_s:.0f} s"
    )
    yield image
    remove_image(image.reference)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(REPORT_KEY, [])
    if lines:
        terminalreporter.write_sep("-", "container image")
        for line in lines:
            terminalreporter.write_line(line)
