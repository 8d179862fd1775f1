#!/usr/bin/env bash
# Make `promtool` available for tests/test_alerts.py (it checks docs/prometheus-alerts.yml
# and the PromQL of docs/grafana-dashboard.json), without installing the Prometheus server.
#
# - A promtool already on the PATH is used as it is.
# - Otherwise Debian's `prometheus` package is fetched with `apt-get download` (never
#   installed: no service, no user, no maintainer script) into the cache directory, and only
#   its usr/bin/promtool is extracted, with dpkg-deb, into .venv/bin.
# - The .deb stays in the cache, so a fresh clone extracts it again without downloading.
#   `apt-get update` runs only when apt knows no candidate for the package.
#
# Idempotent: when .venv/bin/promtool answers, a second run only checks it (well under a
# second). Concurrent runs wait for each other (a lock). Run scripts/setup.sh first (it makes
# .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="prometheus"
CACHE_DIR="${AGENTDOCK_CACHE_DIR:-/var/cache/agentdock}"
BIN_DIR=".venv/bin"
TARGET="$BIN_DIR/promtool"
DEB=""

say() { printf 'setup-promtool: %s\n' "$*"; }
die() { printf 'setup-promtool: error: %s\n' "$*" >&2; exit 1; }

# The first line of `promtool --version` ("promtool, version 2.42.0 (…)"), or failure.
promtool_version() {
    "$1" --version 2>&1 | head -n 1
}

# The version apt would download, or nothing when apt knows no candidate.
apt_candidate() {
    apt-cache policy "$PACKAGE" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# Set DEB to a cached .deb of the package, if one is there and readable.
find_cached_deb() {
    local deb
    for deb in "$CACHE_DIR/${PACKAGE}"_*.deb; do
        [[ -s "$deb" ]] || continue
        # The control fields only: quick, and enough to know the archive is whole.
        if [[ "$(dpkg-deb --field "$deb" Package 2>/dev/null)" == "$PACKAGE" ]]; then
            DEB="$deb"
            return 0
        fi
        say "removing unreadable cached $deb"
        rm -f "$deb"
    done
    return 1
}

# Download the package's .deb into the cache and set DEB to it.
download_deb() {
    command -v apt-get >/dev/null 2>&1 || die "no promtool on the PATH and no apt-get to fetch one: install promtool"
    if [[ -z "$(apt_candidate)" ]]; then
        [[ "$(id -u)" -eq 0 ]] || die "apt knows no '$PACKAGE' package and only root may run apt-get update"
        say "apt-get update (apt knows no '$PACKAGE' package yet)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        [[ -n "$(apt_candidate)" ]] || die "apt knows no '$PACKAGE' package even after apt-get update"
    fi
    local tmp deb
    tmp="$(mktemp -d "$CACHE_DIR/promtool.XXXXXX")"
    say "downloading $PACKAGE $(apt_candidate) with apt-get download (about 19 MB) into $CACHE_DIR"
    # Root downloads into a directory the _apt sandbox user cannot write: say so to apt.
    if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$PACKAGE") >"$tmp.log" 2>&1; then
        tail -n 20 "$tmp.log" >&2 || true
        rm -rf "$tmp"
        die "apt-get download $PACKAGE failed (log: $tmp.log)"
    fi
    deb="$(find "$tmp" -maxdepth 1 -name "${PACKAGE}_*.deb" -print -quit)"
    [[ -n "$deb" ]] || {
        rm -rf "$tmp"
        die "apt-get download produced no ${PACKAGE}_*.deb (log: $tmp.log)"
    }
    # Only the package just downloaded stays in the cache.
    rm -f "$CACHE_DIR/${PACKAGE}"_*.deb
    DEB="$CACHE_DIR/$(basename "$deb")"
    mv "$deb" "$DEB"
    rm -rf "$tmp" "$tmp.log"
}

# Extract usr/bin/promtool from DEB into TARGET (atomically: a concurrent run sees the old
# binary or the new one, never half of one).
extract_promtool() {
    local deb="$1" tmp version
    tmp="$(mktemp "$BIN_DIR/.promtool.XXXXXX")"
    if ! dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/promtool >"$tmp"; then
        rm -f "$tmp" "$deb"
        die "could not extract usr/bin/promtool from $deb (removed it: run this script again to download it)"
    fi
    chmod 0755 "$tmp"
    if ! version="$(promtool_version "$tmp")"; then
        rm -f "$tmp"
        die "the promtool extracted from $deb does not run: $version"
    fi
    mv -f "$tmp" "$TARGET"
    say "installed $TARGET ($version)"
}

main() {
    local started=$SECONDS found version
    if found="$(command -v promtool)"; then
        version="$(promtool_version "$found")" || die "$found does not run: $version"
        say "using $found on the PATH ($version)"
        return 0
    fi
    [[ -d "$BIN_DIR" ]] || die "$BIN_DIR is missing: run scripts/setup.sh first"
    if [[ -x "$TARGET" ]] && version="$(promtool_version "$TARGET")"; then
        say "$TARGET present ($version)"
        return 0
    fi
    command -v dpkg-deb >/dev/null 2>&1 || die "no promtool on the PATH and no dpkg-deb to extract one: install promtool"
    mkdir -p "$CACHE_DIR" || die "cannot create $CACHE_DIR (set AGENTDOCK_CACHE_DIR)"
    # Two test runs set up at once: the second waits, then finds the first one's promtool.
    exec 9>"$CACHE_DIR/.setup-promtool.lock"
    if ! flock -n 9; then
        say "another setup-promtool.sh runs; waiting for it"
        flock 9
        if [[ -x "$TARGET" ]] && version="$(promtool_version "$TARGET")"; then
            say "$TARGET present ($version)"
            return 0
        fi
    fi
    if find_cached_deb; then
        say "using cached $DEB"
    else
        download_deb
    fi
    extract_promtool "$DEB"
    say "ready in $((SECONDS - started))s"
}

main "$@"
