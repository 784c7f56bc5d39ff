#!/usr/bin/env bash
# Benchmarks: `npm run bench -- <suite>` prints a table and writes bench/results/<suite>.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
ensure_node_modules
build >/dev/null
exec node dist/bench/run.js "$@"
