#!/usr/bin/env bash
# Install what building, running and testing rdp-proxy needs on Debian 12: the system packages
# (PostgreSQL, Redis, Xvfb, FreeRDP, xrdp, Chromium and ChromeDriver) and a Rust toolchain.
# Safe to run again: it installs only what is missing. Needs root for apt-get.
set -euo pipefail

packages=(
  build-essential pkg-config ca-certificates curl iproute2 util-linux
  postgresql redis-server
  xvfb x11-utils x11-apps x11-xserver-utils xdotool imagemagick xterm
  freerdp2-x11 freerdp2-shadow-x11 winpr-utils xrdp xorgxrdp
  chromium chromium-driver
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
command -v node >/dev/null || missing+=(nodejs)

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian xrdp package starts system-wide xrdp services; the tests run private instances
# and do not need them.
if command -v systemctl >/dev/null && systemctl is-active --quiet xrdp 2>/dev/null; then
  systemctl disable --now xrdp xrdp-sesman >/dev/null 2>&1 || true
fi

if ! command -v cargo >/dev/null; then
  if [[ -x $HOME/.cargo/bin/cargo ]]; then
    echo "install-deps: add \$HOME/.cargo/bin to PATH" >&2
  else
    # Debian 12's own rustc (1.63) is too old for IronRDP, which needs 1.94 or newer.
    echo "install-deps: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
  fi
fi
