#!/usr/bin/env bash
# Refreshes the image's lock files (pins + sha256 hashes, installed with --require-hashes):
#   requirements.lock        the runtime dependencies in pyproject.toml plus the [fast] and [otlp] extras
#   requirements-build.lock  [build-system] requires: setuptools, and mypy (mypyc compiles the request path,
#                            setup.py) with its own dependencies; the Dockerfile installs it into a build-only
#                            virtualenv that builds the agent's wheel with --no-build-isolation
# One universal resolution (uv's --universal) for every supported Python (>= 3.11) and platform:
# markers keep what only some need (typing-extensions below 3.13, uvloop off Windows), and each
# pin lists the hashes of all its files on PyPI. Needs uv (`pip install uv`); run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null || { echo "uv not found: pip install uv" >&2; exit 1; }

common=(--universal --python-version 3.11 --generate-hashes --quiet --custom-compile-command "scripts/lock.sh")
uv pip compile pyproject.toml --extra fast --extra otlp --no-emit-package sidecar-agent "${common[@]}" -o requirements.lock "$@"
python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
    | uv pip compile - "${common[@]}" -o requirements-build.lock "$@"
