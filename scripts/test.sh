#!/usr/bin/env bash
# The whole test suite: unit, integration and end-to-end. Installs what it needs first.
# Tests start their own nats-server (and LevelDB dirs) on free ports in temp dirs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
ensure_node_modules
build
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
log "running ${#files[@]} test files"
exec node --test --test-concurrency=2 "${files[@]}"
