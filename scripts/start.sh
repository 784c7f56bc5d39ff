#!/usr/bin/env bash
# Starts cri-ledger with its defaults (extra arguments go to `cri-ledger serve`).
# Installs what it needs first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
prepare
exec node dist/src/cli/main.js serve "$@"
