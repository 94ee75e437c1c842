"""The agent's image, built from the Dockerfile with podman, on the real base or a stand-in.

The Dockerfile starts ``FROM python:${PYTHON_VERSION}-slim``. With registry access the base is
pulled as it is. Without (the test machines reach package registries only), a stand-in is made
from Debian packages: ``debootstrap --variant=minbase`` with python3, python3-venv,
python-is-python3 and ca-certificates, trimmed like a slim image, then ``podman import`` as
``docker.io/library/python:<its python>-slim`` so that the Dockerfile's FROM resolves to it. The
stand-in has Debian's Python in /usr (the real image has its own in /usr/local, with pip); both
give ``python -m venv`` a working pip, and both have apt with their Debian mirror in their sources
(debootstrap writes the mirror it used), which the build stage uses for gcc. One difference
remains: python:*-slim ships Python's headers, the stand-in does not. Rather than python3-dev in
the stand-in, which would put ~60 MB the real base does not have (libpython's static library,
libc6-dev) into every image built on it and so into the size the tests report, the Dockerfile's
build stage installs python3-dev itself where Python.h is missing; the final stage never has it.
The stand-in is kept in the image store (labelled with its recipe, ``_recipe_key``: suite,
packages, trim) and made again when the recipe changes or it is a month old.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.podman import cache_dir, image_exists, podman, podman_env

STANDIN_SUITE = os.environ.get("SIDECAR_TEST_STANDIN_SUITE", "bookworm")
STANDIN_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# What python:*-slim (debian:*-slim) leaves out, and what apt leaves behind.
STANDIN_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
STANDIN_LABEL = "org.sidecar-agent.test.stand-in"
STANDIN_MAX_AGE_S = 30 * 86400
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Base:
    python_version: str  # "3.11"
    reference: str  # docker.io/library/python:3.11-slim
    is_stand_in: bool
    note: str  # what the test output says about it


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    base: Base
    build_s: float
    size_bytes: int
    base_size_bytes: int


def dockerfile_python_version() -> str:
    match = re.search(r"^ARG PYTHON_VERSION=(\S+)$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile declares ARG PYTHON_VERSION=<default>"
    return match.group(1)


def prepare_base() -> Base:
    """The real base when it can be pulled (``SIDECAR_TEST_BASE=stand-in`` skips the attempt), else the stand-in."""
    version = dockerfile_python_version()
    real = f"docker.io/library/python:{version}-slim"
    if os.environ.get("SIDECAR_TEST_BASE") != "stand-in":
        pulled = podman("pull", "--quiet", real, check=False, timeout=600)
        if pulled.returncode == 0:
            return Base(version, real, False, f"real base {real} (pulled)")
        reason = (pulled.stderr.strip().splitlines() or ["no output"])[-1]
    else:
        reason = "SIDECAR_TEST_BASE=stand-in"
    with _locked(cache_dir() / "stand-in.lock"):
        base = _cached_stand_in() or _make_stand_in()
    return Base(
        base.python_version,
        base.reference,
        True,
        f"stand-in base {base.reference} from Debian {STANDIN_SUITE} packages ({base.note}); "
        f"the real {real} could not be pulled: {reason[:200]}",
    )


def _recipe_key() -> str:
    recipe = repr((STANDIN_SUITE, STANDIN_PACKAGES, STANDIN_TRIM, 2))  # bump when _make_stand_in changes
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _cached_stand_in() -> Base | None:
    found = podman(
        "images", "--filter", f"label={STANDIN_LABEL}={_recipe_key()}", "--format", "{{.Repository}}:{{.Tag}} {{.CreatedAt}}"
    ).stdout.split("\n")
    for line in filter(None, found):
        reference = line.split()[0]
        if not reference.startswith("docker.io/library/python:"):
            continue  # an image built on the stand-in inherits its label
        created = podman("image", "inspect", "--format", "{{.Created.Unix}}", reference).stdout.strip()
        if time.time() - int(created) < STANDIN_MAX_AGE_S:
            version = reference.rsplit(":", 1)[1].removesuffix("-slim")
            return Base(version, reference, True, "cached")
    return None


def _make_stand_in() -> Base:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="standin-", dir=cache_dir()))
    rootfs = work / "rootfs"
    try:
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(STANDIN_PACKAGES)}",
                STANDIN_SUITE,
                str(rootfs),
                _debian_mirror(),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        for trimmed in STANDIN_TRIM:
            for entry in (rootfs / trimmed).glob("*"):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        python = os.readlink(rootfs / "usr/bin/python3")  # "python3.11"
        version = python.removeprefix("python")
        reference = f"docker.io/library/python:{version}-slim"
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                "podman",
                "import",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",  # as the real image sets it: kube play takes PATH from the image alone
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                'CMD ["python3"]',
                "--change",
                f"LABEL {STANDIN_LABEL}={_recipe_key()}",
                "-",
                reference,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
            env=podman_env(),
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"podman import failed: {imported.stderr}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # The stand-in this one replaces, if any, lost its tag: drop it.
    podman("image", "prune", "--force", "--filter", f"label={STANDIN_LABEL}", check=False)
    return Base(version, reference, True, f"made in {time.monotonic() - started:.0f} s")


def _debian_mirror() -> str:
    """The host's own Debian mirror when it has one (apt's sources), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        for url in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)", path.read_text(), re.MULTILINE):
            if url.rstrip("/").endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` while inside (two test runs never make the stand-in at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


def build_image(base: Base) -> BuiltImage:
    """``podman build --format docker`` (the OCI format drops HEALTHCHECK) of the repository.

    ``--layers=false``: on vfs every cached layer is a full copy of the tree, so a build without
    the layer cache is both faster and leaves nothing behind. The host's CA bundle is mounted
    into the RUN steps for hosts whose way to the package index presents a local CA.
    """
    reference = f"localhost/sidecar-agent:test-{uuid.uuid4().hex[:8]}"
    args = ["build", "--format", "docker", "--layers=false", "--network", "host", "--pull=never"]
    args += ["--build-arg", f"PYTHON_VERSION={base.python_version}", "--tag", reference]
    if HOST_CA_BUNDLE.is_file():
        args += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    started = time.monotonic()
    podman(*args, str(REPO_ROOT), timeout=900)
    build_s = time.monotonic() - started
    size = int(podman("image", "inspect", "--format", "{{.Size}}", reference).stdout)
    base_size = int(podman("image", "inspect", "--format", "{{.Size}}", base.reference).stdout)
    return BuiltImage(reference, base, build_s, size, base_size)


def remove_image(reference: str) -> None:
    if image_exists(reference):
        podman("rmi", "--force", reference, check=False, timeout=120)
