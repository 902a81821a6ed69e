#!/usr/bin/env bash
# One entry point for developers and CI: makes its own virtualenv, installs the project with
# its test extras, then runs the demo, the test suite or the benchmarks.
# Usage: scripts/dev.sh demo|test|bench [args]
set -euo pipefail
cd "$(dirname "$0")/.."

# PYTHON=/path/to/python3 picks the interpreter (Python 3.11.0 or newer); each interpreter
# other than the default gets a virtualenv of its own, .venv-<version>.
if [ -n "${PYTHON:-}" ]; then
    EXPLICIT_PYTHON=1
else
    EXPLICIT_PYTHON=
    PYTHON=$(command -v python3.11 || command -v python3 || true)
fi

if [ -z "$PYTHON" ]; then
    echo "scripts/dev.sh: Python 3.11 or newer is required (apt-get install python3)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "scripts/dev.sh: $PYTHON is older than Python 3.11" >&2
    exit 1
fi
if [ -n "$EXPLICIT_PYTHON" ]; then
    VENV=${VENV:-.venv-$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')}
else
    VENV=${VENV:-.venv}
fi

# What defines the install: pyproject.toml (dependencies, packages, console scripts) and the
# top-level packages (the editable install maps each by name).  A change reinstalls; code
# changes inside a package need nothing.
stamp="$VENV/.installed-$( (cat pyproject.toml; ls -d -- */__init__.py) | sha1sum | cut -c1-12)"
# Debian packages venv (and ensurepip) separately from the interpreter: install it if we can.
install_venv_module() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
        echo "scripts/dev.sh: cannot create a virtualenv; install python3-venv" >&2
        exit 1
    fi
}

if [ ! -e "$stamp" ]; then
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        install_venv_module
        "$PYTHON" -m venv "$VENV"
    fi
    echo "scripts/dev.sh: installing condor-annexd and its test tools into $VENV ..." >&2
    # The default virtualenv gets the newest pip; one of an explicit interpreter keeps that
    # interpreter's own (Debian 12's: pip 23.0.1), so both pips' editable installs are used.
    if [ -z "$EXPLICIT_PYTHON" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$stamp"
fi

command=${1:-}
shift || true
case "$command" in
    demo) exec "$VENV/bin/python" -m localaws.demo "$@" ;;
    test)
        # The whole suite installs the built wheel into a fresh virtualenv of the system
        # Python with Debian's own pip, as a site would (tests/test_packaging.py).
        if [ $# -eq 0 ] && [ -x /usr/bin/python3 ] &&
                ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
            install_venv_module
        fi
        "$VENV/bin/python" -m pytest "$@"
        # Debian's own Python (3.11.2) and pip (23.0.1) are covered inside the suite: the wheel
        # on /usr/bin/python3 runs the daemon under a stand-in master and makes an annex, and
        # Debian pip's editable install is checked (tests/test_packaging.py).
        # The whole suite: also run the instance-side tests with condor_annex_ec2 as an image
        # runs it -- the single-file bundle on the oldest Python 3.9+ here, in a virtualenv
        # holding boto3 alone (.venv-instance-<version>, made once; tests/instance_side.py).
        if [ $# -eq 0 ] && [ -z "$EXPLICIT_PYTHON" ]; then
            instance_command=$("$VENV/bin/python" tests/instance_side.py)
            echo "scripts/dev.sh: instance-side tests again with condor_annex_ec2 =" \
                 "$instance_command" >&2
            ANNEX_EC2_COMMAND=$instance_command "$VENV/bin/python" -m pytest \
                tests/test_bootstrap.py tests/test_interruption.py
        fi
        ;;
    bench) exec "$VENV/bin/python" bench/run.py "$@" ;;
    *) echo "usage: scripts/dev.sh demo|test|bench [args...]" >&2; exit 2 ;;
esac
