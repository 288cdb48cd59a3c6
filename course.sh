#!/bin/sh
# One command to set up and open the course, one to set up and run every test.
#   ./course.sh start [JUPYTERLAB OPTIONS]   set up .venv, open the course (student view)
#   ./course.sh test [PYTEST OPTIONS]        set up .venv with the test tools, run lint + sync check + pytest
# and, once set up:
#   ./course.sh validate [CHAPTER...]        run your chapters as the grader does, list every failing check
#   ./course.sh progress                     your progress per exercise, as a table
#   ./course.sh instructor [JUPYTERLAB OPTIONS]   the instructor's view (formgrader)
#   ./course.sh constraints                  refresh constraints.txt from the installed .venv
# Needs Python 3.10+ (python3 on PATH, or set PYTHON=/path/to/python3).
# Installs use constraints.txt (the versions the course was tested with); COURSE_CONSTRAINTS=
# (empty) installs the newest versions allowed by pyproject.toml instead.
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV="${COURSE_VENV:-.venv}"
CONSTRAINTS="${COURSE_CONSTRAINTS-constraints.txt}"

# What an install depends on: the extra, pyproject.toml and the constraints file.
fingerprint() {
    {
        echo "extra=$1 constraints=$CONSTRAINTS"
        cat pyproject.toml
        if [ -n "$CONSTRAINTS" ]; then cat "$CONSTRAINTS"; fi
    } | "$VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

# ensure_venv EXTRA: create .venv and install the course with EXTRA, unless the same install was
# already done (a stamp in .venv records the fingerprint; `test` includes `course`).
ensure_venv() {
    extra="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required"'
        "$PYTHON" -m venv "$VENV"
    fi
    for done_extra in "$extra" test; do
        stamp="$VENV/.course-installed-$done_extra"
        if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(fingerprint "$done_extra")" ] \
            && [ -x "$VENV/bin/course-lib" ]; then
            return 0
        fi
        if [ "$extra" = test ]; then break; fi
    done
    echo "== installing the course into $VENV (extra: $extra)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    if [ -z "$CONSTRAINTS" ]; then
        "$VENV/bin/python" -m pip install --quiet -e ".[$extra]"
    elif ! "$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" -e ".[$extra]"; then
        # e.g. an older Python for which a tested version does not exist
        echo "warning: the tested versions ($CONSTRAINTS) cannot be installed here;" \
            "installing the newest allowed by pyproject.toml instead" >&2
        "$VENV/bin/python" -m pip install --quiet -e ".[$extra]"
    fi
    fingerprint "$extra" >"$VENV/.course-installed-$extra"
}

# Compile the layers' kernels ahead (course-lib warm-kernels: once per install, at once when
# already done), niced in the background: JupyterLab opens now, and by the time a notebook
# trains a network its kernels are cached. Output: $VENV/warm-kernels.log. Started from a
# subshell, so that init reaps it, not JupyterLab (which this shell becomes).
warm_kernels() {
    (nice -n 10 "$VENV/bin/course-lib" warm-kernels </dev/null >"$VENV/warm-kernels.log" 2>&1 &)
}

command="${1:-}"
if [ $# -gt 0 ]; then shift; fi
case "$command" in
start)
    ensure_venv course
    warm_kernels
    exec "$VENV/bin/course-lib" lab "$@"
    ;;
instructor)
    ensure_venv course
    exec "$VENV/bin/course-lib" lab --instructor "$@"
    ;;
validate | progress)
    ensure_venv course
    exec "$VENV/bin/course-lib" "$command" "$@"
    ;;
constraints)
    ensure_venv test
    exec "$VENV/bin/python" scripts/constraints.py "$@"
    ;;
test)
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
    echo "usage: ./course.sh start | validate [CHAPTER...] | progress | instructor | test | constraints" >&2
    exit 2
    ;;
esac
