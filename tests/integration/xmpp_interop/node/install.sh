#!/bin/sh
# Installs the node interop client's dependencies (pinned in package.json) next to this script.
set -e
cd "$(dirname "$0")"
[ -d node_modules/@xmpp/client ] || npm install --no-audit --no-fund --silent
