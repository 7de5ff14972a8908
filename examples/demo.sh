#!/usr/bin/env bash
# A live walk through bulkhead on this host with the example tenants: a web team, a
# database team and a shared ingress. Run by `bash scripts/demo.sh` (which builds
# bulkhead first). Needs root: it creates real cgroups, namespaces, loop-mounted
# encrypted volumes and sandboxes.
#
# The demo runs its own instance ("demo") with state and master key under a temporary
# directory, and removes every tenant at the end (`bulkhead gc --all`) unless --keep.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(pwd)/${CARGO_TARGET_DIR:-target}/release/bulkhead"
[ -x "$BIN" ] || BIN="$(pwd)/${CARGO_TARGET_DIR:-target}/debug/bulkhead"
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
keep=false
[ "${1:-}" = "--keep" ] && keep=true

if [ "$(id -u)" -ne 0 ]; then
  echo "the demo creates real sandboxes: run it as root (sudo bash scripts/demo.sh)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/bulkhead-demo.XXXXXX)
chmod 711 "$work"   # sandbox holders run as unprivileged host ids and must traverse it
export BULKHEAD_STATE_ROOT="$work/state"
export BULKHEAD_INSTANCE=demo
export BULKHEAD_ACTOR="${BULKHEAD_ACTOR:-demo}"
specs="$work/specs"
mkdir -p "$specs"
cp -r examples/platform.yaml examples/tenants "$specs/"
sed -i "s/instance: bh /instance: demo /; s|file: /etc/bulkhead/master.key|file: $work/master.key|" "$specs/platform.yaml"

cleanup() {
  if $keep; then
    echo "kept: instance demo, state in $BULKHEAD_STATE_ROOT (BULKHEAD_STATE_ROOT=$BULKHEAD_STATE_ROOT BULKHEAD_INSTANCE=demo $BIN gc --all)"
  else
    printf '\n\033[1m== Offboarding every tenant: stop, unmount, crypto-shred, remove\033[0m\n'
    "$BIN" gc --all || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }
inside() { # tenant, description, script
  printf '\n\033[1m== Inside %s: %s\033[0m\n' "$1" "$2"
  "$BIN" run "$1" -- /bin/sh -c "$3" || true
}

step "Is this host ready to isolate tenants?" "$BIN" doctor || true
step "Validate the example tenants" "$BIN" validate "$specs"
bad="$work/bad.yaml"
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
step "What would change?" "$BIN" plan "$specs"
step "Apply: every action audited, then done" "$BIN" apply "$specs" -m "onboard web, db and ingress"
step "The tenants, defaults filled in" "$BIN" get tenants
step "One tenant in detail: spec, reachability, what the host shows" "$BIN" describe tenant web

inside web "who am I, what can I see" \
  'echo "user: $(id)"; echo "hostname: $(hostname)"; echo "processes visible: $(ls /proc | grep -c "^[0-9]")";
   grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status; echo "mounts: $(wc -l < /proc/self/mounts)"'
inside web "try to break out — each attempt must fail" '
  try() { if sh -c "$2" >/dev/null 2>&1; then echo "  LEAK:    $1"; else echo "  denied:  $1"; fi; }
  try "write to the host /usr"              "touch /usr/pwned"
  try "write to the root file system"       "touch /pwned"
  try "create a user namespace"             "unshare -U true"
  try "mount a tmpfs"                       "mount -t tmpfs none /tmp"
  try "read the kernel log"                 "dmesg"
  try "change the hostname"                 "hostname evil"
  try "see the host root file system"       "ls /proc/1/root/home"
  try "open a raw block device"             "cat /dev/vda"
  try "write a kernel setting"              "echo 1 > /proc/sys/kernel/panic"
  echo "the tenant volume is writable:"; echo "hello from web" > /data/hello && cat /data/hello'
inside db "a different tenant: its own pids, its own volume, no trace of web" \
  'echo "hostname: $(hostname)"; echo "pid 1: $(tr "\0" " " < /proc/1/cmdline)"; echo "volume: $(ls -A /data | wc -l) files"'
inside web "a fork bomb stops at the tenant's pids.max (512)" \
  'python3 -c "
import os, time
children = []
try:
    for _ in range(2000):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    print(\"LEAK: 2000 processes started\")
except OSError as error:
    print(\"fork refused after\", len(children), \"children:\", error.strerror)
for pid in children:
    os.kill(pid, 9)
for pid in children:
    os.waitpid(pid, 0)
"'
printf '\n\033[1m== Inside web/app: a memory hog is OOM-killed inside its own cgroup (512Mi)\033[0m\n'
"$BIN" run web --workload app -- /usr/bin/python3 -c 'b = bytearray(1 << 30); print("LEAK: allocated 1 GiB")' \
  && echo "LEAK: the hog survived" || echo "killed with exit code $? (137 = SIGKILL from the OOM killer); the other tenants never noticed:"
"$BIN" run db -- /bin/sh -c 'echo "  db still answers: $(hostname)"' || true

step "Suspend web: every process frozen, its key out of the kernel" "$BIN" suspend web --evict-key
step "Resume web" "$BIN" resume web
step "Every change is in the hash-chained audit log (last 12)" bash -c "\"$BIN\" audit log | tail -n 12"
step "...and the chain verifies" "$BIN" audit verify
