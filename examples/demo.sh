#!/usr/bin/env bash
# A walk through bulkhead with the example tenants: a web team, a database team and a
# shared ingress. Run by `bash scripts/demo.sh` (which builds bulkhead first).
#
# Uses its own instance state under a temporary directory unless BULKHEAD_STATE_ROOT is
# set, and removes it at the end unless --keep is given.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/bulkhead"
[ -x "$BIN" ] || BIN="${CARGO_TARGET_DIR:-target}/debug/bulkhead"
keep=false
[ "${1:-}" = "--keep" ] && keep=true

export BULKHEAD_STATE_ROOT="${BULKHEAD_STATE_ROOT:-$(mktemp -d /tmp/bulkhead-demo.XXXXXX)}"
export BULKHEAD_ACTOR="${BULKHEAD_ACTOR:-demo}"
cleanup() {
  if ! $keep; then rm -rf "$BULKHEAD_STATE_ROOT"; fi
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "Is this host ready to isolate tenants?" "$BIN" doctor || true
step "Validate the example tenants" "$BIN" validate examples/
bad=$(mktemp /tmp/bulkhead-bad.XXXXXX.yaml)
cat > "$bad" <<'YAML'
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata:
  name: ../etc
spec:
  profile: strict
  quota:
    memroy: 2Gi
    pids: 99999999999
YAML
printf '\n\033[1m== Bad input is refused, every problem at once, and nothing changes\033[0m\n'
"$BIN" validate "$bad" || echo "(exit code $?)"
rm -f "$bad"
step "What would change?" "$BIN" plan examples/
step "Apply (audited before it is stored)" "$BIN" apply examples/ -m "onboard web, db and ingress"
step "The tenants, defaults filled in" "$BIN" get tenants
step "One tenant in detail" "$BIN" describe tenant web
step "Nothing to do the second time" "$BIN" plan examples/
step "Every change is in the hash-chained audit log" "$BIN" audit log
step "...and the chain verifies" "$BIN" audit verify
$keep && echo "state kept in $BULKHEAD_STATE_ROOT"
