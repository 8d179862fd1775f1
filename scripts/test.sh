#!/usr/bin/env bash
# Set everything up, then run every check: ruff, mypy --strict, the TypeScript
# client check, and the whole pytest suite against the real Docker engine.
# In CI (CI=true) tests that need Docker fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

export AGENTDOCK_SETUP_DOCKER=1
bash scripts/setup.sh
bash scripts/setup-browser.sh
bash scripts/setup-promtool.sh

if [[ "${CI:-}" == "true" ]]; then
    export AGENTDOCK_REQUIRE_DOCKER=1
    export AGENTDOCK_REQUIRE_BROWSER=1
fi
export TESTCONTAINERS_RYUK_DISABLED=true

echo "== ruff"
.venv/bin/ruff check service tests migrations bench
.venv/bin/ruff format --check service tests migrations bench
echo "== mypy --strict"
.venv/bin/mypy
echo "== TypeScript client"
PYTHON=.venv/bin/python bash scripts/check-ts-client.sh
echo "== pytest"
.venv/bin/python -m pytest "$@"
