"""The request path compiled with mypyc, and the switch back to the pure-Python modules.

``pip install .`` compiles :data:`COMPILED_MODULES` with mypyc where a C compiler is present
(``setup.py``); the ``.py`` files stay the source, and the same tests run against both forms. An
extension module beside its ``.py`` file wins at import, unless :func:`choose` decides otherwise:

- ``AGENT_PURE_PYTHON=1`` in the environment: pure Python, on purpose (CI runs the suite both ways);
- a source file differs from the one that was compiled (its sha256 is recorded at build time in
  ``agent/_compiled_sources.py``): pure Python, so an edit is never shadowed by a stale build.

Either way it is all or nothing: compiled modules call each other natively, so a mix would run
the stale code anyway. :func:`choose` runs once, from ``agent/__init__.py``, before any of these
modules is imported; the agent logs what it decided (``code`` in the "agent started" line).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The modules every proxied request runs through (the tracer and its encoder: every traced one).
# setup.py reads this tuple (without importing the package), so keep it a literal.
COMPILED_MODULES = (
    "agent.metrics.http",
    "agent.metrics.routes",
    "agent.otlp",
    "agent.proxy.access_log",
    "agent.proxy.augment",
    "agent.proxy.context",
    "agent.proxy.exchange",
    "agent.proxy.listener",
    "agent.proxy.local",
    "agent.proxy.request_head",
    "agent.proxy.response_head",
    "agent.proxy.settings",
    "agent.proxy.spans",
    "agent.proxy.tunnel",
    "agent.proxy.upstream",
    "agent.proxy.wire",
    "agent.rules.access",
    "agent.rules.clock",
    "agent.rules.cors",
    "agent.rules.errors",
    "agent.rules.ids",
    "agent.rules.security_headers",
    "agent.tracing",
)
PURE_ENV = "AGENT_PURE_PYTHON"
PACKAGE_ROOT = Path(__file__).resolve().parent

code = "pure Python (not compiled)"  # what runs; set by choose()


def source_path(module: str) -> Path:
    """``agent.proxy.wire`` -> ``<package>/proxy/wire.py``."""
    return PACKAGE_ROOT.joinpath(*module.split(".")[1:]).with_suffix(".py")


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_compiled(module: ModuleType) -> bool:
    """True when ``module`` was loaded from an extension module, not from its ``.py`` file."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def pure_requested(environ: dict[str, str] | os._Environ[str]) -> bool:
    return environ.get(PURE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def decide(built: dict[str, str] | None, pure: bool, extensions_present: bool, digest: dict[str, str]) -> str:
    """What to run, as the text the agent logs; starts with ``compiled`` only when compiled modules run.

    ``built``: the sources' sha256 recorded at build time (None: not compiled); ``digest``: the
    sources' sha256 now.
    """
    if built is None or not extensions_present:
        return "pure Python (not compiled)"
    if pure:
        return f"pure Python ({PURE_ENV}=1)"
    changed = sorted(module for module, sha in built.items() if digest.get(module) != sha)
    if changed:
        return f"pure Python (changed since compiled: {', '.join(changed)})"
    return "compiled (mypyc)"


class PureFinder:
    """First on ``sys.meta_path``: loads the compiled modules from their ``.py`` files instead."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = frozenset(modules)

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name not in self.modules:
            return None
        return importlib.util.spec_from_file_location(name, source_path(name))


def _built_sources() -> dict[str, str] | None:
    try:
        from agent._compiled_sources import SOURCES  # written by setup.py when it compiles
    except ImportError:
        return None
    return dict(SOURCES)


def _extensions_present() -> bool:
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return all(any(source_path(m).with_suffix(s).exists() for s in suffixes) for m in COMPILED_MODULES)


def choose(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Decide once, before the compiled modules are imported; install :class:`PureFinder` unless compiled."""
    global code
    built = _built_sources()
    pure = pure_requested(environ)
    present = built is not None and _extensions_present()
    digest = {m: source_digest(source_path(m)) for m in built or ()} if present and not pure else {}
    code = decide(built, pure, present, digest)
    if not code.startswith("compiled"):  # also when a failed build left some extension modules behind
        sys.meta_path.insert(0, PureFinder(COMPILED_MODULES))
    return code
