#!/bin/sh
# Build the web client into services/web/dist: install the locked npm dependencies and bundle.
# Idempotent; the launcher and CI call it. Needs node >= 20 and npm.
set -eu
cd "$(dirname "$0")"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs
