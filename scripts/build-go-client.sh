#!/usr/bin/env bash
# Compiles test/support/go/cri-go-client (a CRI client on grpc-go, as kubelet, crictl and
# critest dial the socket) into dist/go/cri-go-client. GOPATH mode against Debian's
# packaged sources (golang-go, golang-google-grpc-dev): no module download, no network,
# no generated code. The build cache lives under /tmp, not $HOME, so a root shell with an
# odd or missing HOME builds too, and `rm -rf dist` does not throw the cache away.
set -euo pipefail
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOPATH_DEBIAN=/usr/share/gocode
if ! command -v go >/dev/null || [ ! -d "$GOPATH_DEBIAN/src/google.golang.org/grpc" ]; then
  echo "error: the Go CRI test client needs Debian's golang-go and golang-google-grpc-dev (apt-get install -y golang-go golang-google-grpc-dev)" >&2
  exit 1
fi
mkdir -p "$ROOT_DIR/dist/go"
cd "$ROOT_DIR/test/support/go/cri-go-client"
env GO111MODULE=off GOPATH="$GOPATH_DEBIAN" GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
  GOCACHE="${TMPDIR:-/tmp}/cri-ledger-go-cache" \
  go build -o "$ROOT_DIR/dist/go/cri-go-client" .
