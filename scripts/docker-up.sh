#!/usr/bin/env bash
# Bring up a local Docker engine and the images agentdock uses.
#
# - If an engine already answers (default socket, or DOCKER_HOST), only the
#   images are ensured.
# - Otherwise Debian's docker.io is installed when dockerd is missing, stale
#   pid files and sockets left by a killed engine are removed, and
#   `dockerd --bridge=none --iptables=false --ip-forward=false` is started in
#   the background. Its containers get no network but loopback, so
#   scripts/serve.sh then runs project containers with network mode `none`.
# - Images are built locally (no image registry is reachable): a
#   debootstrapped Debian rootfs with Claude Code (the native binary of the
#   npm package @anthropic-ai/claude-code-linux-x64, at the version pinned in
#   scripts/claude-code.version) and a busybox rootfs, each fed to
#   `docker import`. Both carry the session holder, agentdock-hold, compiled
#   static here from service/runtimes/agentdock-hold.c (gcc and libc6-dev are
#   installed when missing). The base image is labelled with its Claude Code
#   version and the holder's source hash, and rebuilt when the pin, the
#   holder's source (or BASE_REVISION below) changes; it is built
#   under a temporary tag and retagged only once `claude --version` answers
#   in it, so the old image serves until then.
#
# Runs as root on Debian bookworm. Idempotent: a second run only checks.
# Concurrent runs wait for each other (a lock), so an image is built once.
set -euo pipefail

BASE_IMAGE="${AGENTDOCK_IMAGE:-agentdock-base:latest}"
BUSYBOX_IMAGE="${AGENTDOCK_BUSYBOX_IMAGE:-agentdock-busybox:latest}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The one place the Claude Code version is pinned (see docs/agents.md).
CLAUDE_PIN_FILE="$SCRIPT_DIR/claude-code.version"
CLAUDE_PACKAGE="@anthropic-ai/claude-code-linux-x64"
# npm pack's tarballs are kept here, so a rebuild downloads nothing.
CACHE_DIR="${AGENTDOCK_CACHE_DIR:-/var/cache/agentdock}"
# Bump when the base image's recipe (ensure_base_image) changes: images
# labelled with another revision are rebuilt.
BASE_REVISION=4
# The session holder (service/runtimes/agentdock-hold.c), compiled static here and installed
# in both images; an image whose holder was built from other source is rebuilt.
HOLDER_SRC="$SCRIPT_DIR/../service/runtimes/agentdock-hold.c"
HOLDER_REVISION="$(sha256sum "$HOLDER_SRC" | cut -c1-16)"
LABEL_HOLDER="agentdock.holder"
HOLDER_BIN=""
LABEL_CLAUDE="agentdock.claude-version"
LABEL_REVISION="agentdock.base-revision"
LOCK_FILE="/run/lock/agentdock-docker-up.lock"
DOCKERD_LOG="/var/log/agentdock-dockerd.log"
DOCKER_PIDFILE="/var/run/docker.pid"
# dockerd 20.10 supervises its own containerd and records it here.
CONTAINERD_PIDFILE="/var/run/docker/containerd/containerd.pid"
# dockerd 20.10 uses a "system" containerd whenever this socket exists.
SYSTEM_CONTAINERD_SOCK="/run/containerd/containerd.sock"
START_TIMEOUT=60
SUITE="bookworm"
PATH_IN_IMAGE="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

APT_UPDATED=0
ROOTFS=""
TMP_IMAGE=""
CLAUDE_TGZ=""

say() { printf 'docker-up: %s\n' "$*"; }
die() { printf 'docker-up: error: %s\n' "$*" >&2; exit 1; }

engine_answers() {
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# Install the given packages with apt, running `apt-get update` at most once.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        say "apt-get update"
        apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    say "installing $*"
    # Never let a package's maintainer scripts start a service (dockerd
    # started by an init script would get the default bridge).
    local policy="/usr/sbin/policy-rc.d" made_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0 log
    log="$(mktemp /tmp/agentdock-apt.XXXXXX)"
    apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1 || rc=$?
    if [[ "$made_policy" -eq 1 ]]; then
        rm -f "$policy"
    fi
    if [[ "$rc" -ne 0 ]]; then
        tail -n 30 "$log" >&2
        die "apt-get install $* failed (exit $rc, log: $log)"
    fi
    rm -f "$log"
}

# Debian's plain `busybox` also ships /bin/busybox, but linked dynamically:
# useless in an image without libc.
have_static_busybox() {
    [[ "$(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null)" == "install ok installed" ]]
}

# True if PID exists and is not a zombie (a killed dockerd lingers as a
# zombie until PID 1 reaps it, and kill -0 still succeeds on it).
proc_running() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# Print the pid in PIDFILE if it names a running process called NAME.
live_pid() {
    local pidfile="$1" name="$2" pid
    [[ -r "$pidfile" ]] || return 1
    pid="$(tr -d '[:space:]' <"$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || return 1
    proc_running "$pid" || return 1
    printf '%s\n' "$pid"
}

# A pid file naming a dead process (or, after a reboot, a recycled pid now
# used by something else) makes dockerd refuse to start, or makes it adopt
# and later kill an unrelated process as "its" containerd.
remove_stale_pidfile() {
    local pidfile="$1" name="$2"
    [[ -e "$pidfile" ]] || return 0
    if ! live_pid "$pidfile" "$name" >/dev/null; then
        say "removing stale $pidfile ($(tr -d '[:space:]' <"$pidfile" 2>/dev/null || true))"
        rm -f "$pidfile"
    fi
}

remove_stale_containerd_socket() {
    [[ -S "$SYSTEM_CONTAINERD_SOCK" ]] && command -v ss >/dev/null 2>&1 || return 0
    if ! ss -xlH 2>/dev/null | grep -qF " $SYSTEM_CONTAINERD_SOCK "; then
        say "removing stale $SYSTEM_CONTAINERD_SOCK (nothing listens)"
        rm -f "$SYSTEM_CONTAINERD_SOCK"
    fi
}

show_log_tail() {
    printf 'docker-up: last lines of %s:\n' "$DOCKERD_LOG" >&2
    tail -n 30 "$DOCKERD_LOG" >&2 || true
}

# Wait until the engine answers. Returns 1 as soon as dockerd PID is gone,
# 2 after START_TIMEOUT seconds.
wait_for_engine() {
    local pid="$1" i
    for ((i = 0; i < START_TIMEOUT; i++)); do
        if engine_answers; then
            return 0
        fi
        if ! proc_running "$pid"; then
            return 1
        fi
        sleep 1
    done
    return 2
}

ensure_engine() {
    if engine_answers; then
        say "engine already up (server $(docker version --format '{{.Server.Version}}'))"
        return 0
    fi
    case "${DOCKER_HOST:-}" in
        "" | unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
        *) die "DOCKER_HOST=$DOCKER_HOST does not answer; this script only starts the local default engine" ;;
    esac

    if ! command -v dockerd >/dev/null 2>&1; then
        # One apt run for everything a fresh machine needs.
        local pkgs=(docker.io)
        command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap)
        have_static_busybox || pkgs+=(busybox-static)
        command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
        apt_install "${pkgs[@]}"
    fi

    local pid rc=0
    if pid="$(live_pid "$DOCKER_PIDFILE" dockerd)"; then
        say "dockerd (pid $pid) is running but not answering yet; waiting"
        wait_for_engine "$pid" || rc=$?
        case "$rc" in
            0)
                say "engine up (server $(docker version --format '{{.Server.Version}}'))"
                return 0
                ;;
            1) say "dockerd (pid $pid) exited; starting a new one" ;;
            *)
                show_log_tail
                die "dockerd (pid $pid) did not answer within ${START_TIMEOUT}s; not starting a second one"
                ;;
        esac
    fi
    remove_stale_pidfile "$DOCKER_PIDFILE" dockerd
    remove_stale_pidfile "$CONTAINERD_PIDFILE" containerd
    remove_stale_containerd_socket

    say "starting dockerd (log: $DOCKERD_LOG)"
    # Not with our lock (fd 9): a dockerd that inherited it would hold it for as long as it
    # runs, and every later run of this script would wait for it forever.
    setsid nohup dockerd --bridge=none --iptables=false --ip-forward=false \
        >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    rc=0
    wait_for_engine "$pid" || rc=$?
    case "$rc" in
        0) say "engine up (server $(docker version --format '{{.Server.Version}}'), dockerd pid $pid)" ;;
        1) show_log_tail; die "dockerd (pid $pid) exited during startup" ;;
        *) show_log_tail; die "engine did not answer within ${START_TIMEOUT}s" ;;
    esac
}

image_exists() {
    docker image inspect "$1" >/dev/null 2>&1
}

# The Debian mirror apt uses on this machine (deb822 or one-line sources).
debian_mirror() {
    local uri
    uri="$(
        {
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null
            echo
        } | awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; ok = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris = u[1] }
                    if ($i ~ /^Suites:/ && $i ~ ("[ \t]" suite "([ \t]|$)")) ok = 1
                    if ($i ~ /^Enabled:[ \t]*no/) ok = 0
                }
                if (ok && uris != "") { print uris; exit }
            }'
    )"
    if [[ -z "$uri" ]]; then
        uri="$(
            cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk -v suite="$SUITE" '$1 == "deb" {
                    for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) break
                    if ($(i + 1) == suite) { print $i; exit }
                }'
        )"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

cleanup_rootfs() {
    [[ -n "$ROOTFS" && -d "$ROOTFS" ]] || return 0
    # debootstrap mounts proc/sys (and maybe dev) inside the target; never
    # rm -rf through a mount.
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v root="$ROOTFS" 'index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$ROOTFS"
    ROOTFS=""
}

# A build that died half-way leaves no temporary tag behind.
cleanup() {
    cleanup_rootfs
    if [[ -n "$HOLDER_BIN" ]]; then
        rm -rf "$(dirname "$HOLDER_BIN")"
        HOLDER_BIN=""
    fi
    if [[ -n "$TMP_IMAGE" ]]; then
        docker rmi "$TMP_IMAGE" >/dev/null 2>&1 || true
        TMP_IMAGE=""
    fi
}
trap cleanup EXIT

# Feed DIR to `docker import` as IMAGE; further arguments are more
# Dockerfile instructions (`LABEL k=v`, `ENV k=v`) for --change.
import_rootfs() {
    local dir="$1" image="$2" cmd="$3" path="$4"
    shift 4
    local changes=(--change "CMD [\"$cmd\"]" --change "ENV PATH=$path") change
    for change in "$@"; do
        changes+=(--change "$change")
    done
    tar --numeric-owner -C "$dir" -c . |
        docker import "${changes[@]}" - "$image" >/dev/null
}

image_label() {
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null
}

# The pinned Claude Code version: the first line of the pin file that is
# neither blank nor a comment.
claude_version() {
    [[ -r "$CLAUDE_PIN_FILE" ]] || die "$CLAUDE_PIN_FILE is missing"
    local version
    version="$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$CLAUDE_PIN_FILE" | grep -m1 . || true)"
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] ||
        die "$CLAUDE_PIN_FILE: no version in it (want e.g. 2.1.332, got '${version}')"
    printf '%s\n' "$version"
}

# The version recorded in a packed tarball's package.json, or nothing if the
# tarball is unreadable.
tarball_version() {
    tar -xzOf "$1" package/package.json 2>/dev/null |
        sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1
}

# Set CLAUDE_TGZ to the npm tarball of the Claude Code VERSION, downloading it
# with `npm pack` (which checks the registry's integrity hash) unless cached.
fetch_claude() {
    local version="$1" name tgz tmp
    name="anthropic-ai-claude-code-linux-x64-$version.tgz"
    tgz="$CACHE_DIR/$name"
    if [[ -s "$tgz" ]]; then
        if [[ "$(tarball_version "$tgz")" == "$version" ]]; then
            say "Claude Code $version: using cached $tgz"
            CLAUDE_TGZ="$tgz"
            return 0
        fi
        say "removing unreadable cached $tgz"
        rm -f "$tgz"
    fi
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    mkdir -p "$CACHE_DIR"
    tmp="$(mktemp -d "$CACHE_DIR/pack.XXXXXX")"
    say "downloading $CLAUDE_PACKAGE@$version with npm pack (about 190 MB; log: $tmp.log)"
    # A throw-away npm cache: the tarball is kept once, in CACHE_DIR.
    if ! (cd "$tmp" && npm pack --pack-destination "$tmp" --cache "$tmp/npm-cache" \
        --no-audit --no-fund --loglevel=warn "$CLAUDE_PACKAGE@$version") >"$tmp.log" 2>&1; then
        tail -n 30 "$tmp.log" >&2 || true
        rm -rf "$tmp"
        die "npm pack $CLAUDE_PACKAGE@$version failed (log: $tmp.log)"
    fi
    [[ -s "$tmp/$name" && "$(tarball_version "$tmp/$name")" == "$version" ]] || {
        rm -rf "$tmp"
        die "npm pack did not produce $name for version $version (log: $tmp.log)"
    }
    mv "$tmp/$name" "$tgz"
    rm -rf "$tmp" "$tmp.log"
    CLAUDE_TGZ="$tgz"
}

# Keep only the tarball of the pinned version in the cache.
prune_claude_cache() {
    local keep="$1" f
    for f in "$CACHE_DIR"/anthropic-ai-claude-code-linux-x64-*.tgz; do
        [[ -e "$f" && "$f" != "$keep" ]] || continue
        say "removing old $f"
        rm -f "$f"
    done
}

# True (and says why) when BASE_IMAGE must be (re)built for Claude Code WANT.
base_image_stale() {
    local want="$1" have_claude have_revision
    if ! image_exists "$BASE_IMAGE"; then
        say "image $BASE_IMAGE missing"
        return 0
    fi
    have_claude="$(image_label "$BASE_IMAGE" "$LABEL_CLAUDE")"
    have_revision="$(image_label "$BASE_IMAGE" "$LABEL_REVISION")"
    if [[ -z "$have_revision" && "$BASE_IMAGE" != "agentdock-base:latest" ]]; then
        # An operator's own image under AGENTDOCK_IMAGE: never overwritten.
        say "image $BASE_IMAGE present (not built by this script; left as it is)"
        return 1
    fi
    if [[ "$have_claude" == "$want" && "$have_revision" == "$BASE_REVISION" &&
        "$(image_label "$BASE_IMAGE" "$LABEL_HOLDER")" == "$HOLDER_REVISION" ]]; then
        say "image $BASE_IMAGE present (Claude Code $want, revision $BASE_REVISION)"
        return 1
    fi
    say "image $BASE_IMAGE has Claude Code ${have_claude:-none} (revision ${have_revision:-none}, holder $(image_label "$BASE_IMAGE" "$LABEL_HOLDER")); want $want (revision $BASE_REVISION, holder $HOLDER_REVISION): rebuilding"
    return 0
}

ensure_base_image() {
    local want
    want="$(claude_version)"
    base_image_stale "$want" || return 0
    local started=$SECONDS
    # First the download, which fails faster than debootstrap.
    fetch_claude "$want"
    build_holder
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    local mirror
    mirror="$(debian_mirror)"
    ROOTFS="$(mktemp -d /var/tmp/agentdock-rootfs.XXXXXX)"
    say "building $BASE_IMAGE: debootstrap $SUITE from $mirror (about a minute)"
    if ! debootstrap --variant=minbase --include=git,python3,ca-certificates,procps,ripgrep \
        "$SUITE" "$ROOTFS" "$mirror" >"$ROOTFS.log" 2>&1; then
        tail -n 30 "$ROOTFS.log" >&2 || true
        die "debootstrap failed (full log: $ROOTFS.log)"
    fi
    rm -f "$ROOTFS.log"
    groupadd --root "$ROOTFS" --gid 1000 agent
    useradd --root "$ROOTFS" --uid 1000 --gid 1000 --create-home \
        --home-dir /home/agent --shell /bin/bash agent
    # Claude Code keeps its login, settings and history in ~/.claude.
    install -d -m 0700 -o 1000 -g 1000 "$ROOTFS/home/agent/.claude"
    say "installing Claude Code $want as /usr/local/bin/claude"
    tar -xzOf "$CLAUDE_TGZ" package/claude >"$ROOTFS/usr/local/bin/claude" ||
        die "could not unpack package/claude from $CLAUDE_TGZ"
    chown 0:0 "$ROOTFS/usr/local/bin/claude"
    chmod 0755 "$ROOTFS/usr/local/bin/claude"
    install -m 0755 -o 0 -g 0 "$HOLDER_BIN" "$ROOTFS/usr/local/bin/agentdock-hold"
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*

    local old_id=""
    old_id="$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)"
    TMP_IMAGE="agentdock-build:base-$$"
    say "importing the rootfs as $TMP_IMAGE"
    # The binary is the pinned one and root's: its self-updater stays off.
    import_rootfs "$ROOTFS" "$TMP_IMAGE" /bin/bash "$PATH_IN_IMAGE" \
        "ENV DISABLE_AUTOUPDATER=1" \
        "LABEL $LABEL_CLAUDE=$want $LABEL_REVISION=$BASE_REVISION $LABEL_HOLDER=$HOLDER_REVISION"
    cleanup_rootfs
    local answer
    answer="$(docker run --rm --network none --user 1000 "$TMP_IMAGE" claude --version 2>&1)" ||
        die "claude --version failed in $TMP_IMAGE: $answer"
    [[ "$answer" == "$want "* ]] || die "claude --version in $TMP_IMAGE printed '$answer', want $want"
    holder_runs_in "$TMP_IMAGE"
    docker tag "$TMP_IMAGE" "$BASE_IMAGE"
    docker rmi "$TMP_IMAGE" >/dev/null
    TMP_IMAGE=""
    if [[ -n "$old_id" ]]; then
        # Containers of the old image (or another tag of it) keep it alive.
        docker rmi "$old_id" >/dev/null 2>&1 ||
            say "old image ${old_id#sha256:} kept: a container or another tag still uses it"
    fi
    prune_claude_cache "$CLAUDE_TGZ"
    say "built $BASE_IMAGE in $((SECONDS - started))s ($answer)"
}

# The session holder, compiled once per run (static: it needs nothing in an image).
build_holder() {
    [[ -z "$HOLDER_BIN" ]] || return 0
    command -v gcc >/dev/null 2>&1 && [[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/aarch64-linux-gnu/libc.a ]] ||
        apt_install gcc libc6-dev
    HOLDER_BIN="$(mktemp -d /var/tmp/agentdock-holder.XXXXXX)/agentdock-hold"
    gcc -static -O2 -Wall -Wextra -Werror -o "$HOLDER_BIN" "$HOLDER_SRC" ||
        die "could not compile $HOLDER_SRC"
    say "built the session holder (revision $HOLDER_REVISION)"
}

# Without a mode the holder names its usage: it loads and runs.
holder_runs_in() {
    docker run --rm --network none --user 1000 "$1" /bin/sh -c 'agentdock-hold 2>&1 | grep -q "^usage: agentdock-hold"' ||
        die "agentdock-hold does not run in $1"
}

# The busybox test image: busybox's applets and the session holder (sessions survive a
# restart of the service).
BUSYBOX_REVISION=3
LABEL_BUSYBOX_REVISION="agentdock.busybox-revision"

ensure_busybox_image() {
    if image_exists "$BUSYBOX_IMAGE" &&
        [[ "$(image_label "$BUSYBOX_IMAGE" "$LABEL_BUSYBOX_REVISION")" == "$BUSYBOX_REVISION" &&
            "$(image_label "$BUSYBOX_IMAGE" "$LABEL_HOLDER")" == "$HOLDER_REVISION" ]]; then
        say "image $BUSYBOX_IMAGE present (revision $BUSYBOX_REVISION, holder $HOLDER_REVISION)"
        return 0
    fi
    have_static_busybox || apt_install busybox-static
    build_holder
    say "building $BUSYBOX_IMAGE (revision $BUSYBOX_REVISION, holder $HOLDER_REVISION)"
    ROOTFS="$(mktemp -d /var/tmp/agentdock-busybox.XXXXXX)"
    mkdir -p "$ROOTFS"/{bin,etc,root,tmp,home/agent}
    chmod 1777 "$ROOTFS/tmp"
    chmod 700 "$ROOTFS/root"
    cp /bin/busybox "$ROOTFS/bin/busybox"
    local applet
    while read -r applet; do
        [[ -n "$applet" && "$applet" != busybox ]] || continue
        ln -sf busybox "$ROOTFS/bin/$applet"
    done < <(/bin/busybox --list)
    install -m 0755 "$HOLDER_BIN" "$ROOTFS/bin/agentdock-hold"
    printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\n' >"$ROOTFS/etc/passwd"
    printf 'root:x:0:\nagent:x:1000:\n' >"$ROOTFS/etc/group"
    chown 1000:1000 "$ROOTFS/home/agent"
    import_rootfs "$ROOTFS" "$BUSYBOX_IMAGE" /bin/sh /bin \
        "LABEL $LABEL_BUSYBOX_REVISION=$BUSYBOX_REVISION $LABEL_HOLDER=$HOLDER_REVISION"
    cleanup_rootfs
    holder_runs_in "$BUSYBOX_IMAGE"
    say "built $BUSYBOX_IMAGE"
}

# Concurrent runs (two test runs set up at once) would build every image twice.
take_lock() {
    local dir
    dir="$(dirname "$LOCK_FILE")"
    [[ -d "$dir" ]] || LOCK_FILE="/tmp/$(basename "$LOCK_FILE")"
    exec 9>"$LOCK_FILE"
    if ! flock -n 9; then
        say "another docker-up.sh runs; waiting for it"
        flock 9
    fi
}

main() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root"
    local started=$SECONDS
    take_lock
    ensure_engine
    ensure_base_image
    ensure_busybox_image
    say "ready in $((SECONDS - started))s"
}

main "$@"
