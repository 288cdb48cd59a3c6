#!/bin/sh
# One command to set up and open the course, one to set up and run every test.
#   ./course.sh start   create .venv, install the course, open it in JupyterLab
#   ./course.sh test    create .venv, install everything the tests need, run lint + sync check + pytest
# Needs Python 3.10+ (python3 on PATH, or set PYTHON=/path/to/python3).
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV="${COURSE_VENV:-.venv}"

ensure_venv() {
    extra="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required"'
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[$extra]"
}

case "${1:-}" in
start)
    shift
    ensure_venv course
    exec "$VENV/bin/course-lib" lab "$@"
    ;;
test)
    shift
    ensure_venv test
    # Real datasets for the tests, when the shared copy sits beside the repository.
    if [ -z "${COURSE_LIB_DATA:-}" ] && [ -d ../shared/data/mnist ]; then
        COURSE_LIB_DATA="$(cd ../shared/data && pwd)"
        export COURSE_LIB_DATA
    fi
    failed=""
    echo "== lint (ruff)"
    "$VENV/bin/ruff" check . || failed="$failed lint"
    "$VENV/bin/ruff" format --check . || failed="$failed format"
    echo "== chapters/ in sync with solutions/"
    "$VENV/bin/course-lib" release --check || failed="$failed release-check"
    echo "== tests (pytest)"
    status=0
    "$VENV/bin/python" -m pytest "$@" || status=$?
    if [ "$status" -eq 5 ]; then
        echo "pytest collected no tests"
    elif [ "$status" -ne 0 ]; then
        failed="$failed pytest"
    fi
    if [ -n "$failed" ]; then
        echo "FAILED:$failed" >&2
        exit 1
    fi
    echo "all checks passed"
    ;;
*)
    echo "usage: ./course.sh start | test" >&2
    exit 2
    ;;
esac
