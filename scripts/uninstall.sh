#!/usr/bin/env bash
# Removes what scripts/install.sh installed: the unit, the CLI, the app. The ledger
# (/var/lib/cri-ledger: the log, the audit record) and /etc/cri-ledger stay unless
# --purge is given. DESTDIR works as for install.sh.
set -euo pipefail
dest="${DESTDIR:-}"
purge=0
[ "${1:-}" = --purge ] && purge=1
if [ -z "$dest" ] && [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
  systemctl disable --now cri-ledger.service 2>/dev/null || true
fi
rm -f "$dest/etc/systemd/system/cri-ledger.service" "$dest/usr/local/bin/cri-ledger"
rm -rf "$dest/usr/local/lib/cri-ledger"
[ -z "$dest" ] && [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && systemctl daemon-reload
if [ "$purge" = 1 ]; then
  rm -rf "$dest/etc/cri-ledger" "$dest/var/lib/cri-ledger" "$dest/run/cri-ledger"
  echo "cri-ledger removed, with its configuration and its ledger"
else
  echo "cri-ledger removed; kept $dest/etc/cri-ledger and the ledger in $dest/var/lib/cri-ledger (--purge removes them)"
fi
