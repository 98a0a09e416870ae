#!/usr/bin/env bash
# Install the project with its test tools into .venv, then run every gate:
# ruff format --check, ruff check, mypy --strict, import-linter, pytest (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."

# Chromium for the dashboard's browser tests (tests/ui), which fail without it: Debian's
# package, driven by Playwright; Playwright's own browser download is never used.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "chromium is not installed; installing Debian's package" >&2
        { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1 \
            || echo "chromium did not install; the UI tests will fail" >&2
    else
        echo "chromium is not installed (apt-get install chromium); the UI tests will fail" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"

# The real xstate package (v5 and v4, pinned by its lockfile), the reference the XState
# differential tests compare with; those tests fail when it or Node is missing.
if command -v npm >/dev/null 2>&1; then
    npm ci --prefix tests/xstate_reference --no-fund --no-audit --silent \
        || echo "npm ci failed; the XState differential tests will fail" >&2
else
    echo "npm is not installed (apt-get install nodejs npm); the XState differential tests will fail" >&2
fi

ruff format --check .
ruff check .
mypy
lint-imports

# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
status=0
pytest -q -p no:cacheprovider --durations=15 "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit "$status"
