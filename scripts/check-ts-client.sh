#!/usr/bin/env bash
# Check that the browser front end's TypeScript client still compiles against
# the service's OpenAPI schema.
#
# usage: scripts/check-ts-client.sh [SCHEMA_JSON]
#
#   SCHEMA_JSON  an OpenAPI schema file to check against. Without it, the
#                schema is written by the service itself:
#                  "${PYTHON:-.venv/bin/python}" -m service openapi clients/typescript/openapi.json
#                (run from the repository root; PYTHON may be set to another
#                interpreter, relative paths being taken from the root).
#
# Steps: install the pinned node packages of clients/typescript (`npm ci`, only
# when node_modules is missing or older than package.json / package-lock.json;
# node and npm come from apt only when node is missing), generate
# clients/typescript/schema.d.ts with openapi-typescript and a hey-api client
# (generated/hey) with @hey-api/openapi-ts, and type-check usage.ts, client.ts
# (every operation through openapi-fetch, error types included) and hey.ts (the
# hey-api function names are the operation ids) with `tsc --noEmit --strict`.
# Prints "ts-client: ok" and exits 0 on success; exits non-zero otherwise.
set -euo pipefail

say() { printf 'ts-client: %s\n' "$*"; }
reported=""
die() { printf 'ts-client: FAILED: %s\n' "$*" >&2; reported=1; exit 1; }

# Any other failure (set -e) still ends with a FAILED line.
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -z "$reported" ]; then
    printf 'ts-client: FAILED (exit %s)\n' "$rc" >&2
  fi
}
trap on_exit EXIT

[ "$#" -le 1 ] || die "usage: $0 [SCHEMA_JSON]"

# Resolve a given schema path against the caller's directory before moving.
schema_arg=""
if [ "$#" -eq 1 ]; then
  [ -f "$1" ] || die "no such schema file: $1"
  schema_arg=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
client="$root/clients/typescript"
cd "$root"

# --- node and npm -----------------------------------------------------------
if ! command -v node >/dev/null 2>&1; then
  say "node not found; installing nodejs and npm with apt-get"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "node is missing and this is not root (no sudo)"
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
command -v npm >/dev/null 2>&1 || die "npm not found (node is $(command -v node)); install npm"

# --- the schema -------------------------------------------------------------
if [ -n "$schema_arg" ]; then
  schema="$schema_arg"
else
  schema="$client/openapi.json"
  python="${PYTHON:-.venv/bin/python}"
  say "writing the schema with $python -m service openapi"
  "$python" -m service openapi "$schema" || die "could not write the schema with $python -m service openapi"
fi
[ -s "$schema" ] || die "schema file is empty: $schema"

cd "$client"

# --- node packages ----------------------------------------------------------
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ] || [ package.json -nt node_modules ]; then
  say "installing node packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed"
  touch node_modules
fi

# --- generate and type-check --------------------------------------------------
# --default-non-nullable false: a field with a default stays optional, so a
# request body may leave it out (openapi-typescript 7 would otherwise make
# every defaulted field required, request bodies included).
rm -f schema.d.ts
npx --no -- openapi-typescript "$schema" -o schema.d.ts --default-non-nullable false \
  || die "openapi-typescript could not generate schema.d.ts from $schema"

# hey-api names its functions after the operation ids; hey.ts checks that they
# are the clean ones (listProjects, startContainer, ...).
rm -rf generated/hey
npx --no -- openapi-ts -i "$schema" -o generated/hey -c @hey-api/client-fetch --no-log-file --silent \
  || die "@hey-api/openapi-ts could not generate a client from $schema"

# The sockets: types generated from the AsyncAPI document (msgspec's JSON Schemas of the
# very structs the sockets use), checked by sockets.ts.
python="${PYTHON:-$root/.venv/bin/python}"
case "$python" in /*) ;; */*) python="$root/$python" ;; esac
(cd "$root" && "$python" -m service asyncapi "$client/asyncapi.json") \
  || die "could not write the AsyncAPI document with $python -m service asyncapi"
node sockets-gen.mjs asyncapi.json generated/sockets.d.ts \
  || die "could not generate the socket types from asyncapi.json"

say "type-checking usage.ts, client.ts (openapi-fetch), hey.ts (hey-api) and sockets.ts (AsyncAPI)"
npx --no -- tsc --noEmit --strict -p . || die "the TypeScript clients do not compile against the schema"

say "ok"
