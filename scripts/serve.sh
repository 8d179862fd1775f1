#!/usr/bin/env bash
# Set everything up, then run the service: applies migrations and serves on
# AGENTDOCK_HOST:AGENTDOCK_PORT (127.0.0.1:8000 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# scripts/docker-up.sh starts the engine without a bridge network: unless told otherwise,
# project containers get no network at all (set AGENTDOCK_NETWORK to choose one).
export AGENTDOCK_NETWORK="${AGENTDOCK_NETWORK:-none}"
exec .venv/bin/agentdock serve "$@"
