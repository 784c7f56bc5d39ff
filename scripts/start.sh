#!/usr/bin/env bash
# Starts cri-ledger with its defaults (extra arguments go to `cri-ledger serve`).
# Installs what it needs first, and starts the machine's containerd when the default
# socket has none behind it (a machine without systemd, such as a fresh container).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
prepare
address="${CRI_LEDGER_CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}"
if [ "$address" = /run/containerd/containerd.sock ] && ! ctr --address "$address" version >/dev/null 2>&1; then
  log "starting containerd (log: /var/log/containerd.log)"
  nohup containerd >>/var/log/containerd.log 2>&1 &
  for _ in $(seq 1 50); do ctr --address "$address" version >/dev/null 2>&1 && break; sleep 0.2; done
fi
exec node dist/src/cli/main.js serve "$@"
