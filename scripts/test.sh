#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and kernel tests (kernel tests
# need root; as another user they say they are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The Kubernetes schema check must run here, not be skipped (setup.sh installs it).
export BULKHEAD_REQUIRE_SCHEMA_CHECK=1
exec cargo xtask ci "$@"
