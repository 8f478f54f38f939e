#!/usr/bin/env bash
# Run every check and test of rdp-proxy: formatting, clippy, licence and source policy,
# unit, integration and end-to-end tests against real PostgreSQL, Redis, freerdp-shadow, xrdp
# and headless Chromium, and the browser pages' own tests. Installs what is missing first.
# Needs root (apt-get, xrdp test sessions, PostgreSQL run as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-deny >/dev/null; then
  echo "test: installing cargo-deny" >&2
  cargo install --locked --quiet cargo-deny
fi

echo "== cargo fmt" >&2
cargo fmt --all --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo deny" >&2
# Advisories need the RustSec database from the network; licences, bans and sources do not.
cargo deny --log-level error check licenses bans sources
echo "== cargo test" >&2
cargo test --workspace --no-fail-fast
echo "== web tests" >&2
node --test web/test/
