"""Builds sidecar-agent, compiling the request path with mypyc where it can (see agent/compiled.py).

Everything else is in pyproject.toml. The compiled modules are listed once, in
``agent.compiled.COMPILED_MODULES``. Without a C compiler, Python's headers or mypyc, with
``SIDECAR_AGENT_COMPILE=0``, or when a compile fails, the build is the pure-Python package (with a
line saying why); the agent then runs the same ``.py`` files and logs that it does.
"""

from __future__ import annotations

import ast
import hashlib
import os
import platform
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
SOURCES_RECORD = ROOT / "agent" / "_compiled_sources.py"


def compiled_modules() -> tuple[str, ...]:
    """``COMPILED_MODULES`` read from agent/compiled.py without importing the package."""
    tree = ast.parse((ROOT / "agent" / "compiled.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMPILED_MODULES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("agent/compiled.py has no COMPILED_MODULES")


def why_not_compiled() -> str | None:
    if os.environ.get("SIDECAR_AGENT_COMPILE", "1").strip() == "0":
        return "SIDECAR_AGENT_COMPILE=0"
    if platform.python_implementation() != "CPython":
        return f"{platform.python_implementation()} is not CPython"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python headers (Debian: python3-dev)"
    return None


def say(message: str) -> None:
    print(f"sidecar-agent: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """A failed compile leaves the pure-Python package instead of a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler, linker or mypyc errors: all mean "ship the .py files"
            self.fall_back(exc)

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            self.fall_back(exc)

    def fall_back(self, exc: Exception) -> None:
        say(f"compiling the request path failed, installing pure Python: {exc}")
        SOURCES_RECORD.unlink(missing_ok=True)
        Path(self.build_lib, "agent", SOURCES_RECORD.name).unlink(missing_ok=True)


def ext_modules() -> list:  # type: ignore[type-arg]
    modules = compiled_modules()
    reason = why_not_compiled()
    if reason is not None:
        say(f"not compiling the request path ({reason}): pure Python")
        SOURCES_RECORD.unlink(missing_ok=True)
        return []
    from mypyc.build import mypycify

    paths = ["agent/" + "/".join(m.split(".")[1:]) + ".py" for m in modules]
    digests = {m: hashlib.sha256((ROOT / p).read_bytes()).hexdigest() for m, p in zip(modules, paths, strict=True)}
    SOURCES_RECORD.write_text(
        '"""Written by setup.py: the sha256 of each source compiled with mypyc (agent/compiled.py)."""\n\n'
        f"SOURCES = {digests!r}\n",
        encoding="utf-8",
    )
    say(f"compiling {len(modules)} request-path modules with mypyc")
    # The build environment has only the build requirements: third-party imports are Any to mypy
    # (the compiled code calls them as Python would), and the project's own mypy settings
    # (strict, for development) are not applied to the build.
    options = ["--config-file", os.devnull, "--ignore-missing-imports", "--follow-imports=silent"]
    return mypycify([*options, *paths], opt_level="3", group_name="agent")


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
