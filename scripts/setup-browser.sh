#!/usr/bin/env bash
# Set up the real-browser test (tests/test_browser.py), idempotently: Debian's
# chromium (the test drives /usr/bin/chromium; no browser is ever downloaded)
# and the pinned node packages of tests/browser (xterm.js, playwright-core).
# `npm ci` runs only when node_modules is missing or older than package.json /
# package-lock.json. A second run takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup-browser: %s\n' "$*"; }

apt_install() {
    if [[ -z "${apt_updated:-}" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [[ ! -x /usr/bin/chromium ]]; then
    say "installing chromium with apt-get"
    apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing nodejs and npm with apt-get"
    apt_install nodejs npm
fi

cd tests/browser
if [[ ! -d node_modules || package-lock.json -nt node_modules || package.json -nt node_modules ]]; then
    say "installing node packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    touch node_modules
else
    say "node packages up to date"
fi
