#!/usr/bin/env bash
# Installs what bulkhead needs on a Debian machine: system packages and a Rust toolchain.
# Idempotent: installs only what is missing. Sourced by demo.sh and test.sh.
set -euo pipefail

PACKAGES=(build-essential pkg-config nftables iproute2 e2fsprogs util-linux procps kmod python3 bubblewrap)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Rust: bulkhead needs 1.90 or newer (see rust-version in Cargo.toml).
if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no cargo; installing the rustup package and a stable toolchain"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustup || {
    echo "setup: this Debian has no rustup package; install Rust 1.90+ with rustup, then re-run" >&2
    exit 1
  }
  rustup toolchain install stable --profile minimal --component clippy,rustfmt
  rustup default stable
fi
cargo --version

# Kubernetes schema check (crates/bulkhead-k8s/tests/schema.rs): the kubernetes-validate
# package, which bundles the OpenAPI schemas of each Kubernetes version, in a virtual
# environment under the cache directory (never the system's pip).
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VALIDATE_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
if ! "$KUBERNETES_VALIDATE_VENV/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "setup: installing python3-venv"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
  fi
  echo "setup: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION in $KUBERNETES_VALIDATE_VENV"
  rm -rf "$KUBERNETES_VALIDATE_VENV"
  python3 -m venv "$KUBERNETES_VALIDATE_VENV"
  # Retries with a pause: a package index can fail a request now and then.
  for attempt in 1 2 3 4; do
    "$KUBERNETES_VALIDATE_VENV/bin/pip" install -q --disable-pip-version-check --retries 5 \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" && break
    if [ "$attempt" -eq 4 ]; then
      echo "setup: cannot install kubernetes-validate" >&2
      exit 1
    fi
    sleep $((attempt * 5))
  done
fi
export BULKHEAD_KUBERNETES_VALIDATE="$KUBERNETES_VALIDATE_VENV/bin/python"
