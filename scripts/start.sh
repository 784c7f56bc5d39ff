#!/usr/bin/env bash
# Starts cri-ledger with its defaults (extra arguments go to `cri-ledger serve`).
# Installs what it needs first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
ensure_node_modules
build
exec node dist/src/cli/main.js serve "$@"
