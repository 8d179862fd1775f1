#!/usr/bin/env bash
# Set up everything agentdock needs on a Debian machine, idempotently:
# the Python virtualenv (.venv) with the package and its development tools,
# and (unless AGENTDOCK_RUNTIME=local) a Docker engine with the default image.
# A second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
        say "installing python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    say "creating .venv"
    "$PYTHON" -m venv .venv
fi

# Reinstall only when pyproject.toml changed since the last install.
stamp=".venv/.agentdock-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    say "installing Python packages into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    echo "$want" >"$stamp"
else
    say "Python packages up to date"
fi

if [[ "${AGENTDOCK_RUNTIME:-docker}" != "local" || "${AGENTDOCK_SETUP_DOCKER:-}" == "1" ]]; then
    bash scripts/docker-up.sh
fi
