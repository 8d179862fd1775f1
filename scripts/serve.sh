#!/usr/bin/env bash
# Set everything up, then run the service: applies migrations and serves on
# AGENTDOCK_HOST:AGENTDOCK_PORT (127.0.0.1:8000 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/agentdock serve "$@"
