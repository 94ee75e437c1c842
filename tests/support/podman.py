"""Podman for the container tests: a private configuration and image store, and one way to call it.

Everything podman keeps lives under ``cache_dir()`` (``$SIDECAR_TEST_CACHE``, default
``~/.cache/sidecar-agent-tests``), so the base image survives between runs and nothing of the
host's own podman set-up is read or changed. The settings are the ones this kind of host needs
(a sandbox without systemd or cgroup delegation, where raising RLIMIT_NOFILE is refused):

* ``runtime = "runc"``, ``cgroup_manager = "cgroupfs"``, ``events_logger = "file"``;
* ``default_ulimits = []``: podman asks for nofile=1048576 by default, and runc fails with
  "error setting rlimits for ready process" where the hard limit is lower;
* the ``vfs`` storage driver (no overlay mounts needed);
* containers run with ``--network host``: no bridge, no CNI/netavark, loopback only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path

CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{run_dir}/libpod"

[network]
network_backend = "netavark"
"""

STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{cache_dir}/storage"
runroot = "{run_dir}/storage"
"""


class PodmanError(RuntimeError):
    pass


def cache_dir() -> Path:
    """Where the image store and the stand-in base's recipe stamp live between runs."""
    configured = os.environ.get("SIDECAR_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "sidecar-agent-tests"


@cache
def podman_env() -> dict[str, str]:
    """The process environment with podman pointed at the private configuration."""
    root = cache_dir() / "podman"
    # Run state belongs under /run (a tmpfs on most hosts): podman takes a run directory that
    # survived a reboot for containers that are still running. One per image store.
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    run_dir = Path(f"/run/sidecar-agent-tests/{key}") if os.access("/run", os.W_OK) else root / "run"
    root.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    containers_conf = root / "containers.conf"
    storage_conf = root / "storage.conf"
    _write_if_changed(containers_conf, CONTAINERS_CONF.format(run_dir=run_dir))
    _write_if_changed(storage_conf, STORAGE_CONF.format(cache_dir=root, run_dir=run_dir))
    return os.environ | {"CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf)}


def _write_if_changed(path: Path, text: str) -> None:
    """Replace ``path`` atomically, and only when its text changes: another test run may be
    starting podman with it at this moment."""
    if path.exists() and path.read_text() == text:
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    temporary.replace(path)


def podman(
    *args: str, timeout: float = 120, check: bool = True, stdin: str | None = None, enter: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """``podman ARGS`` with the private configuration (run under the ``enter`` prefix, such as
    nsenter's, when given); PodmanError with its output when it fails."""
    result = subprocess.run(
        [*enter, "podman", *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        check=False,
    )
    if check and result.returncode != 0:
        raise PodmanError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@cache
def unavailable_reason() -> str | None:
    """Why podman cannot run containers on this host, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/test.sh installs it with runc, catatonit and debootstrap)"
    if os.geteuid() != 0:
        return "the container tests need root (rootless podman needs subuid/subgid ranges and fuse)"
    if shutil.which("runc") is None:
        return "runc is not installed (scripts/test.sh installs it)"
    try:
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (PodmanError, subprocess.TimeoutExpired) as exc:
        return f"podman cannot run here: {exc}"
    return None


def image_exists(reference: str) -> bool:
    return podman("image", "exists", reference, check=False).returncode == 0


def remove_container(name: str) -> None:
    podman("rm", "--force", "--time", "0", name, check=False, timeout=60)
