#!/usr/bin/env bash
# Set up a fresh Debian 12 machine and run the rdp-proxy demo: installs what is missing, builds
# the release binary, starts a demo desktop (Xvfb + freerdp-shadow-cli on 127.0.0.1) and runs
# `rdp-proxy dev`, which prints the portal URL and the logins. Ctrl-C stops everything.
# State lives in ./.dev and is reused on the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p rdp-proxy

mkdir -p .dev
demo_password=demo-desktop
target_log=.dev/demo-target.log
bash scripts/demo-target.sh "" "$demo_password" >.dev/demo-target.port 2>"$target_log" &
target_pid=$!
proxy_pid=
stop_all() {
  [[ -n $proxy_pid ]] && kill -TERM "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
  kill "$target_pid" 2>/dev/null
  wait "$target_pid" 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 300); do
  grep -q '^port=' .dev/demo-target.port 2>/dev/null && break
  kill -0 "$target_pid" 2>/dev/null || { echo "demo: the demo desktop did not start; see $target_log" >&2; exit 1; }
  sleep 0.1
done
target_port=$(sed -n 's/^port=//p' .dev/demo-target.port)
[[ -n $target_port ]] || { echo "demo: the demo desktop did not report its port; see $target_log" >&2; exit 1; }

# Run in the background and wait, so a SIGINT or SIGTERM to this script alone also stops it.
RDP_PROXY_DEMO_TARGET_PASSWORD=$demo_password ./target/release/rdp-proxy dev \
  --listen "${RDP_PROXY_LISTEN:-127.0.0.1:8080}" --demo-target "127.0.0.1:$target_port" "$@" &
proxy_pid=$!
wait "$proxy_pid"
status=$?
proxy_pid=
exit "$status"
