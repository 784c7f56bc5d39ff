#!/usr/bin/env bash
# Installs cri-ledger as a service, unattended (a node's provisioning can run it):
#   the built app in  $DESTDIR/usr/local/lib/cri-ledger
#   the CLI           $DESTDIR/usr/local/bin/cri-ledger
#   the unit          $DESTDIR/etc/systemd/system/cri-ledger.service
#   the config        $DESTDIR/etc/cri-ledger/config.yaml (kept if it exists)
# Without DESTDIR, on a machine whose PID 1 is systemd, it also enables and starts the
# unit. DESTDIR installs into another root (an image being built, a test's temp dir).
# Run from a clone: it installs what it needs and builds first (scripts/lib.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
dest="${DESTDIR:-}"
app="$dest/usr/local/lib/cri-ledger"
# A clone that was built (npm start, npm test) installs as it is; a fresh one builds first.
[ -f "$ROOT_DIR/dist/src/cli/main.js" ] && [ -d "$ROOT_DIR/node_modules" ] || prepare >/dev/null
node_bin="$(readlink -f "$(command -v node)")"

log "installing the app into $app"
rm -rf "$app.new"
mkdir -p "$app.new"
cp -a "$ROOT_DIR/package.json" "$ROOT_DIR/package-lock.json" "$ROOT_DIR/bin" "$ROOT_DIR/dist" "$ROOT_DIR/proto" "$app.new/"
cp -a "$ROOT_DIR/node_modules" "$app.new/"
# Only what the service and CLI run on: the test and lint tools stay behind.
(cd "$app.new" && npm prune --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
# npm leaves the scope directories of what it pruned (@biomejs, @oxlint, ...) behind, empty.
find "$app.new/node_modules" -mindepth 1 -maxdepth 1 -type d -empty -delete
rm -rf "$app.new/dist/test" "$app.new/dist/bench" "$app.new/dist/go"
rm -rf "$app"
mv "$app.new" "$app"

log "installing the CLI, the unit and the config"
install -d "$dest/usr/local/bin" "$dest/etc/systemd/system" "$dest/etc/cri-ledger"
# The node that ran the install, by its full path: systemd's PATH may not reach it.
cat >"$dest/usr/local/bin/cri-ledger" <<WRAPPER
#!/bin/sh
# cri-ledger's CLI and service (installed by scripts/install.sh).
exec $node_bin /usr/local/lib/cri-ledger/bin/cri-ledger.js "\$@"
WRAPPER
chmod 0755 "$dest/usr/local/bin/cri-ledger"
install -m 0644 "$ROOT_DIR/packaging/cri-ledger.service" "$dest/etc/systemd/system/cri-ledger.service"
if [ -e "$dest/etc/cri-ledger/config.yaml" ]; then
  log "keeping the existing $dest/etc/cri-ledger/config.yaml"
else
  install -m 0644 "$ROOT_DIR/packaging/config.yaml" "$dest/etc/cri-ledger/config.yaml"
fi

if [ -z "$dest" ] && [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
  log "enabling and starting cri-ledger.service"
  systemctl daemon-reload
  systemctl enable --now cri-ledger.service
else
  log "installed; systemd is not PID 1 here (or DESTDIR is set): start it with your init, or run 'cri-ledger serve --config /etc/cri-ledger/config.yaml'"
fi
