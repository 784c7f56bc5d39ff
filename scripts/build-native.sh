#!/usr/bin/env bash
# Compiles native/syscalls.c (mkfifo, mount, umount2 and netns creation without a child
# process) into dist/native/cri_ledger_syscalls.node, against the headers of the Node
# that runs this script. A plain C compile: N-API symbols resolve from node at load time.
set -euo pipefail
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
include_dir="$node_prefix/include/node"
if [ ! -f "$include_dir/node_api.h" ]; then
  echo "error: Node's headers are not at $include_dir (node_api.h); install the headers for $(node --version), e.g. Debian's libnode-dev" >&2
  exit 1
fi
mkdir -p "$ROOT_DIR/dist/native"
cc -O2 -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -pthread \
  -DNODE_GYP_MODULE_NAME=cri_ledger_syscalls -I"$include_dir" \
  -o "$ROOT_DIR/dist/native/cri_ledger_syscalls.node" "$ROOT_DIR/native/syscalls.c"
# systemd's readiness notification (native/notify.c): its own module, loaded only by serve.
cc -O2 -Wall -Wextra -Werror -std=gnu11 -shared -fPIC \
  -DNODE_GYP_MODULE_NAME=cri_ledger_notify -I"$include_dir" \
  -o "$ROOT_DIR/dist/native/cri_ledger_notify.node" "$ROOT_DIR/native/notify.c"
