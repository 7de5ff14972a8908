#!/usr/bin/env bash
# The main job: build bulkhead and run the demo of the example tenants on this host.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=PATH,CARGO_TARGET_DIR bash "$0" "$@"
fi
source scripts/setup.sh
cargo build --release --locked --bin bulkhead
exec bash examples/demo.sh "$@"
