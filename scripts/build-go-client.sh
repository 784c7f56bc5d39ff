#!/usr/bin/env bash
# Compiles the tests' Go clients into dist/go/: test/support/go/cri-go-client (a CRI client
# on grpc-go, as kubelet, crictl and critest dial the socket) and
# test/support/go/spdy-go-client (a streaming client on spdystream, as client-go, kubectl
# and crictl speak to a streaming server), and test/support/go/tcp-echo-server (the echo
# server the port-forward tests mount into a pod). GOPATH mode against Debian's packaged sources
# (golang-go, golang-google-grpc-dev, golang-github-docker-spdystream-dev): no module
# download, no network, no generated code. The build cache lives under /tmp, not $HOME,
# so a root shell with an odd or missing HOME builds too, and `rm -rf dist` does not throw
# the cache away.
set -euo pipefail
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOPATH_DEBIAN=/usr/share/gocode
if ! command -v go >/dev/null || [ ! -d "$GOPATH_DEBIAN/src/google.golang.org/grpc" ] ||
  [ ! -d "$GOPATH_DEBIAN/src/github.com/moby/spdystream" ]; then
  echo "error: the Go test clients need Debian's golang-go, golang-google-grpc-dev and golang-github-docker-spdystream-dev (apt-get install -y golang-go golang-google-grpc-dev golang-github-docker-spdystream-dev)" >&2
  exit 1
fi
mkdir -p "$ROOT_DIR/dist/go"
for client in cri-go-client spdy-go-client tcp-echo-server; do
  (
    cd "$ROOT_DIR/test/support/go/$client"
    env GO111MODULE=off GOPATH="$GOPATH_DEBIAN" GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
      GOCACHE="${TMPDIR:-/tmp}/cri-ledger-go-cache" \
      go build -o "$ROOT_DIR/dist/go/$client" .
  )
done
