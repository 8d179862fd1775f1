#!/usr/bin/env bash
# Set everything up, then run the service: applies migrations and serves on
# AGENTDOCK_HOST:AGENTDOCK_PORT (127.0.0.1:8000 by default).
#
# Network of project containers (docs/agents.md, "Network"): an operator's
# AGENTDOCK_NETWORK always wins (set but empty means the engine's default).
# Otherwise containers use the engine's default network, except on an engine
# without a bridge network, such as the one scripts/docker-up.sh starts
# (`dockerd --bridge=none`): there they get `none`, and this script says so.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'serve: %s\n' "$*"; }

bash scripts/setup.sh

if [[ -n "${AGENTDOCK_NETWORK:-}" ]]; then
    say "project containers use network mode $AGENTDOCK_NETWORK (AGENTDOCK_NETWORK)"
elif [[ -n "${AGENTDOCK_NETWORK+set}" ]]; then
    say "project containers use the engine's default network (AGENTDOCK_NETWORK is set, empty)"
elif [[ "${AGENTDOCK_RUNTIME:-docker}" == "docker" ]] && docker version >/dev/null 2>&1; then
    if docker network inspect bridge >/dev/null 2>&1; then
        say "project containers use the engine's default network (set AGENTDOCK_NETWORK to choose another)"
    else
        say "the Docker engine has no bridge network (scripts/docker-up.sh starts its own with --bridge=none):" \
            "project containers get AGENTDOCK_NETWORK=none, no network at all"
        export AGENTDOCK_NETWORK=none
    fi
fi
exec .venv/bin/agentdock serve "$@"
