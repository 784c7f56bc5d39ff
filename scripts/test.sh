#!/usr/bin/env bash
# The lint and format check, then the whole test suite: unit, integration and end-to-end.
# Installs what it needs first.
# Tests start their own nats-server (free port), containerd (own root, state and socket)
# and LevelDB dirs, all in temp dirs, and remove them when they end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
prepare
ensure_debian_packages "${TEST_DEBIAN_PACKAGES[@]}"
# Lint (oxlint, type-aware) and the format check (Biome): a finding fails the run before any test.
log "linting and checking the format (npm run lint)"
npm run --silent lint
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
log "running ${#files[@]} test files"
status=0
node --test --test-concurrency=2 "${files[@]}" || status=$?
# Pods of the tests that use containerd's namespace "cri-ledger" get cgroups under
# /cri-ledger in every controller; each test removes its own, and the shared parent,
# empty once nothing runs, is removed here (rmdir refuses one that still has children).
for parent in /sys/fs/cgroup/*/cri-ledger; do
  [ -d "$parent" ] && rmdir "$parent" 2>/dev/null || true
done
exit "$status"
