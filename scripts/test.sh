#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and kernel tests (kernel tests
# need root; as another user they say they are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec cargo xtask ci "$@"
