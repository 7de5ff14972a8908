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
