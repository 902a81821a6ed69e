#!/usr/bin/env bash
# One entry point for developers and CI: makes its own virtualenv, installs exactly the locked
# test environment (requirements/test.txt) and then the project, and runs the demo, the test
# suite or the benchmarks; `lock` re-resolves the lock files (docs/testing.md).
# Usage: scripts/dev.sh demo|test|bench [args] | scripts/dev.sh lock [--keep | uv options]
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

LOCK=requirements/test.txt            # the test virtualenv: Python 3.11, Linux, with hashes
INSTANCE_LOCK=requirements/instance.txt  # boto3 alone, Python 3.9+ (tests/instance_side.py)
TOOLS_LOCK=requirements/uv.txt        # uv itself, one version, with hashes
TOOLS=.venv-tools

# Debian packages venv (and ensurepip) separately from the interpreter: install it if we can.
install_venv_module() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
        echo "scripts/dev.sh: cannot create a virtualenv; install python3-venv" >&2
        exit 1
    fi
}

# A new, empty virtualenv of $PYTHON in $1 (whatever was there is cleared); options follow.
make_venv() {
    local dir=$1
    shift
    if ! "$PYTHON" -m venv --clear "$@" "$dir" >/dev/null 2>&1; then
        install_venv_module
        "$PYTHON" -m venv --clear "$@" "$dir"
    fi
}

# uv, at the one version requirements/uv.txt pins, installed by the interpreter's own pip with
# its hashes checked, in a virtualenv of its own: it resolves the locks and installs from them.
run_uv() {
    local stamp
    stamp="$TOOLS/.installed-$(sha1sum < "$TOOLS_LOCK" | cut -c1-12)"
    if [ ! -e "$stamp" ]; then
        echo "scripts/dev.sh: installing uv ($TOOLS_LOCK) into $TOOLS ..." >&2
        # The interpreter's own pip installs into the new virtualenv from outside it (pip
        # 22.3 and later: --python), which spares the virtualenv a pip of its own (ensurepip:
        # 6 s of a fresh clone's set-up); where there is no such pip, ensurepip gives one.
        local -a pip
        if "$PYTHON" -m pip --python "$PYTHON" --version >/dev/null 2>&1; then
            make_venv "$TOOLS" --without-pip
            pip=("$PYTHON" -m pip --python "$TOOLS/bin/python")
        else
            make_venv "$TOOLS"
            pip=("$TOOLS/bin/python" -m pip)
        fi
        "${pip[@]}" install -q --disable-pip-version-check --require-hashes --no-deps \
            -r "$TOOLS_LOCK"
        touch "$stamp"
    fi
    "$TOOLS/bin/uv" "$@"
}

# The name==version lines of lock files.
pins() {
    grep -hoE '^[A-Za-z0-9][A-Za-z0-9._-]*==[^ ;\\]+' "$@" | sort -u || true
}

# Re-resolve every lock file: by default to the newest versions pyproject.toml's ranges allow
# (--upgrade); `lock --keep` changes only what the ranges force; other arguments go to
# `uv pip compile` instead (e.g. --upgrade-package moto).  Then print what changed.
lock() {
    local upgrade=(--upgrade) file
    if [ "${1:-}" = --keep ]; then
        upgrade=()
    elif [ $# -gt 0 ]; then
        upgrade=("$@")
    fi
    before=$(mktemp -d)  # global: the EXIT trap runs after this function has returned
    trap 'rm -rf "$before"' EXIT
    for file in "$LOCK" "$INSTANCE_LOCK" "$TOOLS_LOCK"; do
        pins "$file" > "$before/${file//\//_}" 2>/dev/null
    done
    local compile=(pip compile --quiet --generate-hashes
                   --custom-compile-command "bash scripts/dev.sh lock")
    # The test virtualenv: the project's dependencies, its test extra, requirements/venv.in.
    run_uv "${compile[@]}" ${upgrade[@]+"${upgrade[@]}"} --python-version 3.11 \
        --python-platform x86_64-unknown-linux-gnu --extra test \
        pyproject.toml requirements/venv.in -o "$LOCK"
    # The instance side: boto3 alone, in pyproject.toml's range, for every Python from 3.9 on
    # (universal: markers kept, so that it installs on whichever Python the suite finds).
    "$PYTHON" -c 'import tomllib, re
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(*[d for d in deps if re.match(r"boto3\b", d)])' |
        run_uv "${compile[@]}" ${upgrade[@]+"${upgrade[@]}"} --universal --python-version 3.9 \
            - -o "$INSTANCE_LOCK"
    # uv itself: the exact version requirements/uv.in names (its hashes refreshed).
    run_uv "${compile[@]}" requirements/uv.in -o "$TOOLS_LOCK"
    for file in "$LOCK" "$INSTANCE_LOCK" "$TOOLS_LOCK"; do
        local changes
        changes=$(diff --old-line-format='  - %L' --new-line-format='  + %L' \
                       --unchanged-line-format='' "$before/${file//\//_}" <(pins "$file") || true)
        if [ -n "$changes" ]; then
            echo "$file:"
            echo "$changes"
        else
            echo "$file: unchanged"
        fi
    done
}

if [ "${1:-}" = lock ]; then
    shift
    lock "$@"
    exit 0
fi

# What defines the install: the lock, pyproject.toml (packages, console scripts) and the
# top-level packages (the editable install maps each by name).  A change makes the virtualenv
# anew, so it holds exactly the lock and the project; code changes inside a package need nothing.
# So does a change of how it is installed (INSTALL_RECIPE).
#
# Bytecode is written as each module is first imported, into $VENV/pycache (below), not at
# install time: uv's --compile-bytecode compiled all 377 MB of the lock, sympy and networkx
# (cfn-lint's) included, 15 s of a fresh clone's set-up, for a suite that imports a fraction.
INSTALL_RECIPE="uv pip install --require-hashes --no-deps"
stamp="$VENV/.installed-$( (cat "$LOCK" pyproject.toml; echo "$INSTALL_RECIPE"; ls -d -- */__init__.py) |
                           sha1sum | cut -c1-12)"
if [ ! -e "$stamp" ]; then
    echo "scripts/dev.sh: installing $LOCK and condor-annexd into $VENV ..." >&2
    # No ensurepip: pip is in the lock, like everything else.
    make_venv "$VENV" --without-pip
    run_uv pip install --quiet --python "$VENV/bin/python" --require-hashes --no-deps \
        -r "$LOCK"
    # The project itself, editable, built by the locked setuptools.
    run_uv pip install --quiet --python "$VENV/bin/python" --no-deps --no-build-isolation \
        -e .
    touch "$stamp"
fi

# Every process this script starts -- pytest's workers, the emulators, each daemon, condor_annex
# and instance-side run of the suite, the benchmark's, the demo's -- writes the bytecode of
# what it imports beside the source (the virtualenv's packages, the tree's __pycache__
# directories, which git ignores), where the next one finds it.  Where the environment says
# PYTHONDONTWRITEBYTECODE (this project's machines do) Python reads .pyc files but never
# writes them, so every process compiled boto3, botocore, the HTCondor bindings and our own
# modules from source again: 0.26 s of each daemon's start and a third of each condor_annex's
# CPU (docs/testing.md, "The suite's time").  Not PYTHONPYCACHEPREFIX: under it every
# interpreter ignores the .pyc files installed beside its sources and compiles its standard
# library, and pip in each of the packaging tests' virtualenvs, again (tried: a fresh clone
# wrote 144 MB of bytecode there, the pyenv and Debian standard libraries among it).
# A stale .pyc is never used: Python compares it with its source.
unset PYTHONDONTWRITEBYTECODE

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
        # The whole suite also runs the instance-side tests with condor_annex_ec2 as an image
        # runs it -- the single-file bundle on the oldest Python 3.9+ here, in a virtualenv
        # holding boto3 alone (.venv-instance-<version>, made once; tests/instance_side.py).
        # That rerun goes in the background, beside the main session (one process, -n 0, its
        # own emulator and temporary directory): it fills the cores the main session leaves
        # idle while its tests wait on processes, instead of adding its time after it
        # (docs/testing.md, "The suite's time").  Its output follows the main session's.
        full_suite=
        if [ $# -eq 0 ] && [ -z "$EXPLICIT_PYTHON" ]; then
            full_suite=1
            instance_dir=$(mktemp -d)
            (
                instance_command=$("$VENV/bin/python" tests/instance_side.py) || exit 1
                echo "scripts/dev.sh: instance-side tests again with condor_annex_ec2 =" \
                     "$instance_command"
                ANNEX_EC2_COMMAND=$instance_command exec "$VENV/bin/python" -m pytest -n 0 \
                    -p no:cacheprovider --basetemp "$instance_dir/tmp" \
                    tests/test_bootstrap.py tests/test_interruption.py
            ) > "$instance_dir/output" 2>&1 &
            instance_pid=$!
            # Interrupted (^C reaches the main session only: a background job ignores SIGINT):
            # stop the rerun too, instead of waiting for it.
            trap 'kill "$instance_pid" 2>/dev/null || true; rm -rf "$instance_dir"; exit 130' \
                INT TERM
        fi
        # Debian's own Python (3.11.2) and pip (23.0.1) are covered inside the suite: the wheel
        # on /usr/bin/python3 runs the daemon under a stand-in master and makes an annex, and
        # Debian pip's editable install is checked (tests/test_packaging.py).
        status=0
        "$VENV/bin/python" -m pytest "$@" || status=$?
        if [ -n "$full_suite" ]; then
            instance_status=0
            wait "$instance_pid" || instance_status=$?
            cat "$instance_dir/output"
            rm -rf "$instance_dir"
            if [ "$instance_status" != 0 ]; then
                echo "scripts/dev.sh: the instance-side rerun failed (status" \
                     "$instance_status)" >&2
                [ "$status" != 0 ] || status=$instance_status
            fi
        fi
        exit "$status"
        ;;
    bench) exec "$VENV/bin/python" bench/run.py "$@" ;;
    *) echo "usage: scripts/dev.sh demo|test|bench [args...] | lock [--keep | uv options]" >&2
       exit 2 ;;
esac
