# Shared by scripts/start.sh and scripts/test.sh: install what is missing, then build.
# Safe to run again: each step checks before it acts.

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '==> %s\n' "$*" >&2; }

apt_updated=0
# ensure_debian_packages PKG... installs the Debian packages that are not installed yet.
ensure_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or install them)"; return 1
  fi
  if [ $apt_updated -eq 0 ]; then
    log "apt-get update"; DEBIAN_FRONTEND=noninteractive apt-get update -qq; apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_node_modules runs `npm ci` when node_modules is missing or older than the lock file.
ensure_node_modules() {
  cd "$ROOT_DIR"
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "npm ci"; npm ci --no-audit --no-fund --loglevel=error
  fi
}

build() {
  cd "$ROOT_DIR"
  log "building (tsc)"
  rm -rf dist
  npx tsc -p tsconfig.json
  log "building the native module (cc)"
  bash "$ROOT_DIR/scripts/build-native.sh"
  log "building the Go CRI test client (go, GOPATH mode)"
  bash "$ROOT_DIR/scripts/build-go-client.sh"
}

# The Debian packages the service and its tests use; gcc and libc6-dev compile the
# native module (native/syscalls.c); docker-registry is the registry the registry
# client's tests pull from, and openssl makes the certificate its token auth trusts;
# golang-go and golang-google-grpc-dev (grpc-go's source) build the tests' Go CRI client,
# which dials the socket as kubelet, crictl and critest do, and
# golang-github-docker-spdystream-dev (the SPDY library under client-go) the tests'
# streaming client (see docs/testing.md).
DEBIAN_PACKAGES=(nats-server containerd runc busybox-static containernetworking-plugins iptables gcc libc6-dev docker-registry openssl
  golang-go golang-google-grpc-dev golang-github-docker-spdystream-dev)
# Only the tests need these: Chromium loads the CLI's HTML and SVG pictures headless
# (test/int/pictures.int.test.ts, scripts/screenshot.sh).
TEST_DEBIAN_PACKAGES=(chromium)

# prepare installs what is missing and builds: what every entry point does first.
prepare() {
  cd "$ROOT_DIR"
  ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
  ensure_node_modules
  build
}
