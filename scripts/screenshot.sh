#!/usr/bin/env bash
# Renders a page (a `cri-ledger timeline --format html` or `report` file) in headless
# Chromium and writes a PNG screenshot, so a person can look at what the CLI drew:
#   bash scripts/screenshot.sh report.html report.png [WIDTHxHEIGHT]
set -euo pipefail
page="$(readlink -f "$1")"; out="$(readlink -f "$2")"; size="${3:-1400x1000}"
profile="$(mktemp -d)"; trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size="${size/x/,}" --screenshot="$out" "file://$page" 2>/dev/null
echo "$out"
