#!/usr/bin/env bash
# shellcheck disable=SC2154 # the variables come from configure() in scripts/blue-green-deploy.sh
# DEPLOY_RUNTIME=local: each color is the compiled binary running as a background process on its
# own port (BLUE_PORT, GREEN_PORT), with a pid file and a log file in the state directory. The
# binary is copied per color, so rebuilding app/dist does not touch a running color and a rollback
# finds the previous color's version where it left it. Sourced by scripts/blue-green-deploy.sh.
#
# The process gets only the lines of DEPLOY_ENV_FILE and of <state>/<color>.env (KEY=VALUE), then
# PORT, COLOR, INSTANCE_ID and HOST from the script; DRAIN_TIMEOUT and DRAIN_JITTER_MS follow the
# script's values unless an env file sets them.

local_dir() { printf '%s/%s\n' "$state_dir" "$1"; }
local_pid_file() { printf '%s/%s/server.pid\n' "$state_dir" "$1"; }

local_port() {
  case $1 in
    blue) echo "${BLUE_PORT:-3101}" ;;
    green) echo "${GREEN_PORT:-3102}" ;;
  esac
}

rt_url() { printf 'http://%s:%s\n' "$local_host" "$(local_port "$1")"; }

# local_pid COLOR: the pid of the color's process when it is alive and is the server.
local_pid() {
  local file pid
  file=$(local_pid_file "$1")
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  grep -q realtime-server "/proc/$pid/cmdline" 2>/dev/null || [ ! -d /proc ] || return 1
  printf '%s\n' "$pid"
}

rt_running() { local_pid "$1" >/dev/null; }

# rt_http COLOR PATH: the body of a GET on the color; fails on a connection error or a non-2xx answer.
rt_http() {
  curl -fsS --max-time 2 "${metrics_auth[@]}" "$(rt_url "$1")$2"
}

# rt_http_any COLOR PATH: the body of a GET on the color whatever its status (a draining color
# answers /health with 503 and a body that says so).
rt_http_any() {
  curl -sS --max-time 2 "${metrics_auth[@]}" "$(rt_url "$1")$2"
}

# rt_http_code COLOR PATH: the status code of a GET on the color, 000 when it does not answer.
rt_http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(rt_url "$1")$2" || true
}

# local_env_args COLOR: one KEY=VALUE per line for env(1).
local_env_args() {
  local color=$1 file line
  local -A seen=()
  for file in "$env_file" "$state_dir/$color.env"; do
    [ -f "$file" ] || continue
    while IFS= read -r line || [ -n "$line" ]; do
      [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || continue
      seen[${line%%=*}]=1
      printf '%s\n' "$line"
    done <"$file"
  done
  [ -n "${seen[DRAIN_TIMEOUT]:-}" ] || printf 'DRAIN_TIMEOUT=%s\n' "$drain_timeout_ms"
  [ -n "${seen[DRAIN_JITTER_MS]:-}" ] || [ -z "${DRAIN_JITTER_MS:-}" ] || printf 'DRAIN_JITTER_MS=%s\n' "$DRAIN_JITTER_MS"
  printf 'PORT=%s\nCOLOR=%s\nINSTANCE_ID=websocket-%s\nHOST=%s\n' "$(local_port "$color")" "$color" "$color" "$local_host"
}

# spawn PID_FILE LOG_FILE CMD...: starts CMD in its own session (so a Ctrl-C on the deploy does not
# reach the servers) and writes its pid. The server must not inherit the lock's descriptor: it would
# hold the deploy lock for as long as it runs.
spawn() {
  local pid_file=$1 log_file=$2
  shift 2
  setsid "$@" </dev/null >>"$log_file" 2>&1 9>&- &
  printf '%s\n' "$!" >"$pid_file" || return 1
}

# rt_start COLOR build|keep: (re)starts the color. build installs DEPLOY_BINARY (after building it
# when LOCAL_BUILD=1); keep runs the binary the color ran last (rollback).
rt_start() {
  local color=$1 mode=$2 dir bin
  dir=$(local_dir "$color")
  bin=$dir/realtime-server
  if rt_running "$color"; then
    note "$color is running; stopping it first"
    rt_stop_begin "$color"
    rt_stop_finish "$color"
  fi
  # Each command is checked: this runs inside step's && list, where set -e is off.
  run mkdir -p "$dir" || return 1
  if [ "$mode" = build ]; then
    if [ "${LOCAL_BUILD:-0}" = 1 ]; then
      run bash -c "cd '$root/app' && ./node_modules/.bin/bun run build" || return 1
    fi
    [ -x "$deploy_binary" ] || [ "$dry_run" = 1 ] || fail "no binary at $deploy_binary (build it: cd app && bun run build)"
    run cp "$deploy_binary" "$bin.new" || return 1
    run mv -f "$bin.new" "$bin" || return 1
  else
    [ -x "$bin" ] || [ "$dry_run" = 1 ] || fail "$color has no binary to go back to in $dir"
  fi
  local args=() env_lines
  # Captured first: a failure inside a process substitution would not reach this function.
  env_lines=$(local_env_args "$color") || return 1
  mapfile -t args <<<"$env_lines"
  run spawn "$(local_pid_file "$color")" "$dir/server.log" env -i "${args[@]}" "$bin"
}

# rt_stop_begin COLOR: SIGTERM, once: a second signal makes the server exit without draining.
rt_stop_begin() {
  local pid
  pid=$(local_pid "$1") || return 0
  run kill -TERM "$pid"
}

# rt_stop_finish COLOR: waits for the process to exit, SIGKILL after STOP_GRACE seconds.
rt_stop_finish() {
  local color=$1 pid
  pid=$(local_pid "$color") || { run rm -f "$(local_pid_file "$color")"; return 0; }
  [ "$dry_run" = 1 ] && return 0
  if ! poll_until "$stop_grace" local_gone "$color"; then
    note "$color did not exit within ${stop_grace}s; SIGKILL"
    run kill -KILL "$pid"
    poll_until 5 local_gone "$color" || fail "$color (pid $pid) survives SIGKILL"
  fi
  run rm -f "$(local_pid_file "$color")"
}

local_gone() { ! rt_running "$1"; }

# rt_smoke COLOR: the k6 smoke test against the color directly.
rt_smoke() {
  local color=$1 k6 url
  url=$(rt_url "$color")
  if [ "$dry_run" = 1 ]; then k6=k6; else k6=$(k6_bin "$root") || return 1; fi
  run env WS_URL="${url/#http/ws}" BASE_URL="$url" VUS="$smoke_vus" DURATION="$smoke_duration" \
    ROOM_PREFIX="smoke-$color-$$" "$k6" run --quiet --no-color --no-usage-report --address "" "$smoke_script"
}

# rt_logs COLOR: the last lines the color wrote, for a failure message.
rt_logs() {
  tail -n 20 "$(local_dir "$1")/server.log" 2>/dev/null || true
}
