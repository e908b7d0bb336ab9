#!/bin/sh
# Installs JsSIP (pinned in package.json) next to this script and bundles it for a browser page
# (node_modules/jssip.bundle.js, global JsSIP).
set -e
cd "$(dirname "$0")"
[ -d node_modules/jssip/lib ] && [ -d node_modules/esbuild ] || npm install --no-audit --no-fund --silent
[ -f node_modules/jssip.bundle.js ] || node_modules/.bin/esbuild node_modules/jssip/lib/JsSIP.js \
  --bundle --format=iife --global-name=JsSIP --log-level=warning --outfile=node_modules/jssip.bundle.js
