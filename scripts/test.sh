#!/usr/bin/env bash
# Install the project with its test tools into .venv, then run every gate:
# ruff format --check, ruff check, mypy --strict, import-linter, pytest (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"

ruff format --check .
ruff check .
mypy
lint-imports

# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
status=0
pytest -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit "$status"
