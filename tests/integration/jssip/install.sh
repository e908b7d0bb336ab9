#!/bin/sh
# Installs JsSIP and ws (locked in package-lock.json) next to this script and bundles JsSIP for a page
# (node_modules/jssip.bundle.js, global JsSIP).
set -e
cd "$(dirname "$0")"
[ -d node_modules/jssip/lib ] && [ -d node_modules/esbuild ] && [ -d node_modules/ws ] || npm ci --no-audit --no-fund --silent
[ -f node_modules/jssip.bundle.js ] || node_modules/.bin/esbuild node_modules/jssip/lib/JsSIP.js \
  --bundle --format=iife --global-name=JsSIP --log-level=warning --outfile=node_modules/jssip.bundle.js
