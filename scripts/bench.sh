#!/usr/bin/env bash
# Benchmarks: `npm run bench -- <suite>` prints a table and writes bench/results/<suite>.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
prepare >/dev/null
exec node dist/bench/run.js "$@"
