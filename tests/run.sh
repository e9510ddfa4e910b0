#!/usr/bin/env bash
# The whole test suite in one command, on a fresh machine: installs what the
# tests need when it is missing (as root, from Debian's packages), starts a
# throwaway PostgreSQL for the migration-lock tests, and runs `cargo test`.
# tests/flask.rs installs Flask and gunicorn from PyPI into a virtualenv
# in cargo's test scratch directory under target/ once, and reuses it.
# First, tests/wheel.sh builds the pip-installable wheel (maturin from PyPI)
# and runs initd from it as PID 1; before cargo test, whose lock on target/
# would keep maturin's cargo waiting.
#
#   bash tests/run.sh [CARGO TEST ARGS...]
#
# Plain `cargo test` works too: tests whose tools are missing print a note
# and pass without checking anything.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
command -v awk >/dev/null || need+=(gawk)
command -v make >/dev/null || need+=(make)
command -v gunicorn >/dev/null || need+=(gunicorn)
# tests/flask.rs makes a virtualenv with Flask and gunicorn from PyPI.
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v tini >/dev/null || need+=(tini)
# tests/reload_fuse.rs mounts a FUSE view of the app (/dev/fuse must exist).
command -v bindfs >/dev/null || need+=(bindfs)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "tests/run.sh: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
        exit 1
    fi
    echo "tests/run.sh: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A failing wheel test does not stop the rest: both results are reported.
wheel_rc=0
bash tests/wheel.sh || wheel_rc=$?
bash tests/support/postgres.sh run cargo test "$@"
if [ "$wheel_rc" != 0 ]; then
    echo "tests/run.sh: cargo test passed, but tests/wheel.sh failed (exit $wheel_rc, see above)" >&2
    exit "$wheel_rc"
fi
