#!/usr/bin/env bash
# Start a demo desktop for `rdp-proxy dev`: Xvfb at 1920x1080x24 with a blue
# background and a large xterm, served by freerdp-shadow-cli on 127.0.0.1
# with NLA for one user.
#
# Usage: scripts/demo-target.sh [PORT] [PASSWORD]
#   PORT      TCP port on 127.0.0.1 (default: a free port chosen at start)
#   PASSWORD  NLA password of user "demo" (default: demo-desktop)
# Environment:
#   RDP_PROXY_DEMO_DIR  state directory (default: $PWD/.dev/demo-target)
#
# Prints "port=<PORT>" on stdout once the server listens, then runs in the
# foreground until killed, stopping its processes on exit. Other messages go
# to stderr. The server certificate is kept in the state directory, so its
# fingerprint stays the same across runs. Several instances may run at once:
# each takes its own display and port and keeps its logs and SAM file in
# its own subdirectory.
#
# Needs: xvfb x11-utils x11-xserver-utils xterm freerdp2-shadow-x11 winpr-utils.
set -euo pipefail

readonly demo_user=demo
requested_port=${1:-}
password=${2:-demo-desktop}
state_dir=${RDP_PROXY_DEMO_DIR:-$PWD/.dev/demo-target}

log() { printf 'demo-target: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -n $requested_port ]] && ! [[ $requested_port =~ ^[0-9]+$ && $requested_port -ge 1 && $requested_port -le 65535 ]]; then
  die "invalid port '$requested_port'; expected a number from 1 to 65535"
fi
[[ $password != *:* && $password != *$'\n'* ]] || die "invalid password: a SAM file cannot contain ':' or line breaks"
for program in Xvfb xdpyinfo xsetroot xterm freerdp-shadow-cli winpr-hash flock stdbuf; do
  command -v "$program" >/dev/null || die "$program not found on PATH"
done

# Returns success if some socket listens on TCP port $1 (IPv4 or IPv6).
port_in_use() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v port="$hex" 'FNR > 1 { split($2, a, ":"); if (a[2] == port && $4 == "0A") found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6
}

if [[ -n $requested_port ]] && port_in_use "$requested_port"; then
  die "port $requested_port is already in use"
fi

mkdir -p "$state_dir/config"
state_dir=$(cd "$state_dir" && pwd)
run_dir=$(mktemp -d "$state_dir/run.XXXXXX")
xvfb_pid='' xterm_pid='' shadow_pid=''

# Stops the processes this script started, by PID. Deletes the run
# directory unless the script failed, so that its logs stay for reading.
cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in $shadow_pid $xterm_pid $xvfb_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $shadow_pid $xterm_pid $xvfb_pid; do
    wait "$pid" 2>/dev/null || true
  done
  case $status in
    0 | 130 | 143) rm -rf "$run_dir" ;;
    *) log "kept logs in $run_dir" ;;
  esac
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts Xvfb on the first free display from a random start in 100..899 and
# sets xvfb_pid and display. Retries when another server takes the number.
start_xvfb() {
  local attempt number
  for attempt in 1 2 3 4 5; do
    number=$((100 + RANDOM % 800))
    while [[ -e /tmp/.X11-unix/X$number || -e /tmp/.X$number-lock ]]; do
      number=$((number + 1))
      ((number < 900)) || number=100
    done
    Xvfb ":$number" -screen 0 1920x1080x24 -nolisten tcp -noreset >"$run_dir/xvfb.log" 2>&1 &
    xvfb_pid=$!
    for _ in $(seq 100); do
      kill -0 "$xvfb_pid" 2>/dev/null || break
      # The lock file names our Xvfb only if it, not another server, got the display.
      if [[ $(tr -d ' ' 2>/dev/null <"/tmp/.X$number-lock") == "$xvfb_pid" ]] &&
        xdpyinfo -display ":$number" >/dev/null 2>&1; then
        display=:$number
        return 0
      fi
      sleep 0.1
    done
    kill -TERM "$xvfb_pid" 2>/dev/null || true
    wait "$xvfb_pid" 2>/dev/null || true
    xvfb_pid=''
    log "Xvfb failed on display :$number (attempt $attempt); $(tail -n 1 "$run_dir/xvfb.log")"
  done
  die "Xvfb found no free display; see $run_dir/xvfb.log"
}

# Starts the shadow server on port $1 and sets shadow_pid. Returns 1 if the
# server exits during start-up, as when another process has bound the port.
start_shadow() {
  local port=$1
  DISPLAY=$display XDG_CONFIG_HOME=$state_dir/config HOME=$run_dir WLOG_LEVEL=INFO \
    stdbuf -oL -eL freerdp-shadow-cli /bind-address:127.0.0.1 "/port:$port" \
    /sec:nla "/sam-file:$run_dir/sam" >"$run_dir/shadow.log" 2>&1 &
  shadow_pid=$!
  for _ in $(seq 300); do
    if ! kill -0 "$shadow_pid" 2>/dev/null; then
      wait "$shadow_pid" 2>/dev/null || true
      shadow_pid=''
      return 1
    fi
    grep -qF "Listening on [127.0.0.1]:$port" "$run_dir/shadow.log" && return 0
    sleep 0.1
  done
  die "freerdp-shadow-cli did not listen on port $port within 30 s; see $run_dir/shadow.log"
}

start_xvfb
DISPLAY=$display xsetroot -solid '#2266cc'
DISPLAY=$display xterm -geometry 60x14+240+160 -fa 'DejaVu Sans Mono' -fs 24 \
  -bg '#fff3b0' -fg black -T 'rdp-proxy demo' \
  -e sh -c 'printf "rdp-proxy demo desktop\n\nDisplay %s, user %s.\nType here to test keyboard input.\n\n" "$DISPLAY" "$1"; exec sh' \
  sh "$demo_user" >"$run_dir/xterm.log" 2>&1 &
xterm_pid=$!

winpr-hash -u "$demo_user" -p "$password" -f sam >"$run_dir/sam"

# The first start creates the certificate. Hold a lock until the server
# listens so that parallel runs never create it twice.
exec {lock_fd}>"$state_dir/.start.lock"
flock "$lock_fd"
if [[ -n $requested_port ]]; then
  port_in_use "$requested_port" && die "port $requested_port is already in use"
  start_shadow "$requested_port" || die "freerdp-shadow-cli failed on port $requested_port: $(tail -n 2 "$run_dir/shadow.log")"
  port=$requested_port
else
  port=''
  for _ in 1 2 3 4 5; do
    candidate=$((20000 + RANDOM % 40000))
    port_in_use "$candidate" && continue
    if start_shadow "$candidate"; then
      port=$candidate
      break
    fi
  done
  [[ -n $port ]] || die "freerdp-shadow-cli found no free port; see $run_dir/shadow.log"
fi
flock -u "$lock_fd"
exec {lock_fd}>&-

log "serving display $display on 127.0.0.1:$port, NLA user '$demo_user'"
log "certificate $state_dir/config/freerdp/shadow/shadow.crt"
printf 'port=%s\n' "$port"

# Run until killed or until the server exits.
set +e
wait "$shadow_pid"
status=$?
shadow_pid=''
log "freerdp-shadow-cli exited with status $status; see $run_dir/shadow.log"
exit "$status"
