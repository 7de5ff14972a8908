#!/usr/bin/env bash
# The main job: build bulkhead and run the demo of the example tenants on this host.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked --bin bulkhead
exec bash examples/demo.sh "$@"
