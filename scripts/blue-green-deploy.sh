#!/usr/bin/env bash
# Blue-green deploys of the chat server behind Traefik, without dropping a conversation.
#
# A deploy runs these steps in this order, each printed with its elapsed time:
#   1. lock                 one deploy or rollback at a time
#   2. start the target     rebuild/recreate it (compose) or start the binary (local)
#   3. wait until ready     /health/ready, growing sleeps to READY_TIMEOUT, then one last check
#   4. smoke test           k6 against the target directly; k6's exit code is the gate
#   5. switch               active-color.yml replaced atomically: rendered, copied beside the
#                           watched directory, flushed and checked, then mv
#   6. verify               the front door reports the target VERIFY_COUNT times in a row; the
#                           Traefik API agrees when it is reachable
#   7. post-switch gate     GATE_SECONDS watching the target's error rate
#   8. drain the old color  SIGTERM: its clients get goodbye and resume on the target; wait for its
#                           websocket_connections_total to reach 0 or DRAIN_TIMEOUT; stop it
#   9. hand-over            wait until as many connections as the old color held have arrived on the
#                           target (HANDOVER_TIMEOUT), then print the figures: moved, time, refusals.
#                           "done" is printed after this step, once the clients are back.
# With PROMETHEUS_TARGETS_FILE kept, Prometheus is told to scrape both colors once the target has
# started, and only the color left running at the end (the target, or the old one after a failure).
# The gate runs before the drain on purpose: until step 8 the old color still holds its clients, so
# a rollback after a failed gate puts traffic back on a color that never stopped serving.
# A failure before step 5 stops the target and leaves traffic where it was; a failure in steps 5-7
# restores the previous active-color.yml and drains the target back onto the old color.
set -Eeuo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
# shellcheck source=scripts/deploy/common.sh
. "$root/scripts/deploy/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/blue-green-deploy.sh [--dry-run] COMMAND

Commands:
  deploy [blue|green]   deploy to a color (default: the inactive one) and move traffic to it
  rollback              move traffic back to the other color, started again with the version it
                        last ran; no smoke test and no gate
  status                the active color; each color's health, version and connections; last deploys
  history               the audit log: time, user, action, from, to, version, result, duration

Options:
  --dry-run             print the commands a deploy or rollback would run; change nothing
  -h, --help            this help

Environment (defaults in brackets):
  DEPLOY_RUNTIME        compose | local [compose]
  DEPLOY_STATE_DIR      lock, audit log, pid files, local binaries [<repo>/.deploy]
  TRAEFIK_DYNAMIC_DIR   directory holding active-color.yml [<repo>/traefik/dynamic]
  PROMETHEUS_TARGETS_FILE   file_sd file listing the colors Prometheus scrapes; empty: not kept
                        [compose: <repo>/monitoring/prometheus/targets/websocket.yml; local: empty]
  FRONT_URL             the front door, for verification [http://127.0.0.1]
  TRAEFIK_API_URL       Traefik API; empty skips that check [compose: http://127.0.0.1:8080/api]
  TRAEFIK_METRICS_URL   Traefik's Prometheus metrics, for the upgrades it refused during the hand-over;
                        empty: not counted []
  READY_TIMEOUT         seconds to wait for /health/ready [60]
  SMOKE_SCRIPT          k6 script run against the target [<repo>/app/loadtest/smoke.js]
  SMOKE_VUS, SMOKE_DURATION   its size [5, 10s]
  VERIFY_COUNT, VERIFY_TIMEOUT   front-door answers in a row, seconds allowed [5, 30]
  GATE_SECONDS          post-switch watch; 0 disables it [30]
  GATE_INTERVAL         seconds between two looks [2]
  GATE_MAX_ERROR_RATIO  error frames / frames in above which the deploy rolls back [0.05]
  GATE_MIN_FRAMES       frames in needed before the ratio counts [20]
  DRAIN_TIMEOUT         ms the old color has to lose its connections [30000]
  HANDOVER_TIMEOUT      seconds, after the drain, for its clients to arrive on the target [30]
  STOP_GRACE            seconds a stopping process has before SIGKILL (local) [DRAIN_TIMEOUT/1000+15]
  METRICS_TOKEN         bearer token for /metrics, when the instances require one
  local runtime only:
  BLUE_PORT, GREEN_PORT ports of the colors on LOCAL_HOST [3101, 3102; 127.0.0.1]
  DEPLOY_BINARY         binary a deploy installs [<repo>/app/dist/realtime-server]
  LOCAL_BUILD           1: run 'bun run build' in app/ first [0]
  DEPLOY_ENV_FILE       KEY=VALUE lines for both colors [<state>/local.env]; <state>/<color>.env adds per color

Exit codes: 0 done, 1 the operation failed (one line on stderr says why), 2 usage error.
USAGE
}

usage_error() {
  printf 'error: %s\n' "$1" >&2
  printf "Run '%s --help' for usage.\n" "$0" >&2
  exit 2
}

# fail REASON: stops with a one-line reason. Inside a deploy or rollback the abort path runs first.
fail() {
  if [ -n "${phase:-}" ] && [ "$phase" != "done" ]; then
    abort "$1"
  fi
  printf 'error: %s\n' "$1" >&2
  exit 1
}

positive_int() {
  [[ $2 =~ ^[0-9]+$ ]] || usage_error "invalid $1=$2: expected a whole number"
}

configure() {
  runtime=${DEPLOY_RUNTIME:-compose}
  state_dir=${DEPLOY_STATE_DIR:-$root/.deploy}
  dynamic_dir=${TRAEFIK_DYNAMIC_DIR:-$root/traefik/dynamic}
  active_file=$dynamic_dir/active-color.yml
  history_file=$state_dir/history.tsv
  front_url=${FRONT_URL:-http://127.0.0.1}
  front_url=${front_url%/}
  ready_timeout=${READY_TIMEOUT:-60}
  smoke_script=${SMOKE_SCRIPT:-$root/app/loadtest/smoke.js}
  smoke_vus=${SMOKE_VUS:-5}
  smoke_duration=${SMOKE_DURATION:-10s}
  verify_count=${VERIFY_COUNT:-5}
  verify_timeout=${VERIFY_TIMEOUT:-30}
  gate_seconds=${GATE_SECONDS:-30}
  gate_interval=${GATE_INTERVAL:-2}
  gate_max_error_ratio=${GATE_MAX_ERROR_RATIO:-0.05}
  gate_min_frames=${GATE_MIN_FRAMES:-20}
  drain_timeout_ms=${DRAIN_TIMEOUT:-30000}
  handover_timeout=${HANDOVER_TIMEOUT:-30}
  traefik_metrics=${TRAEFIK_METRICS_URL:-}
  POLL_MAX_SLEEP=${POLL_MAX_SLEEP:-2}
  local pair name
  for pair in READY_TIMEOUT:ready_timeout SMOKE_VUS:smoke_vus VERIFY_COUNT:verify_count VERIFY_TIMEOUT:verify_timeout \
    GATE_SECONDS:gate_seconds GATE_INTERVAL:gate_interval GATE_MIN_FRAMES:gate_min_frames DRAIN_TIMEOUT:drain_timeout_ms HANDOVER_TIMEOUT:handover_timeout \
    POLL_MAX_SLEEP:POLL_MAX_SLEEP; do
    name=${pair#*:}
    positive_int "${pair%%:*}" "${!name}"
  done
  [[ $gate_max_error_ratio =~ ^[0-9]*\.?[0-9]+$ ]] || usage_error "invalid GATE_MAX_ERROR_RATIO=$gate_max_error_ratio: expected a number such as 0.05"
  stop_grace=${STOP_GRACE:-$((drain_timeout_ms / 1000 + 15))}
  positive_int STOP_GRACE "$stop_grace"
  metrics_auth=()
  [ -z "${METRICS_TOKEN:-}" ] || metrics_auth=(-H "Authorization: Bearer $METRICS_TOKEN")
  deploy_user=${SUDO_USER:-${USER:-$(id -un 2>/dev/null || echo unknown)}}
  case $runtime in
    compose)
      traefik_api=${TRAEFIK_API_URL-http://127.0.0.1:8080/api}
      targets_file=${PROMETHEUS_TARGETS_FILE-$root/monitoring/prometheus/targets/websocket.yml}
      # shellcheck source=scripts/deploy/runtime-compose.sh
      . "$root/scripts/deploy/runtime-compose.sh"
      ;;
    local)
      traefik_api=${TRAEFIK_API_URL:-}
      targets_file=${PROMETHEUS_TARGETS_FILE:-}
      local_host=${LOCAL_HOST:-127.0.0.1}
      deploy_binary=${DEPLOY_BINARY:-$root/app/dist/realtime-server}
      env_file=${DEPLOY_ENV_FILE:-$state_dir/local.env}
      positive_int BLUE_PORT "${BLUE_PORT:-3101}"
      positive_int GREEN_PORT "${GREEN_PORT:-3102}"
      # shellcheck source=scripts/deploy/runtime-local.sh
      . "$root/scripts/deploy/runtime-local.sh"
      ;;
    *) usage_error "invalid DEPLOY_RUNTIME=$runtime: expected compose or local" ;;
  esac
  traefik_api=${traefik_api%/}
}

# preflight COMMAND: what the command needs, checked before anything changes (not even the state
# directory is created before these checks pass). Each missing piece stops it with one line.
preflight() {
  local command=$1 tool
  for tool in curl jq flock awk column stat cmp sync; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is required"
  done
  [ "$dry_run" = 1 ] || runtime_prerequisites "$command"
  [ -f "$active_file" ] || fail "no $active_file (set TRAEFIK_DYNAMIC_DIR)"
  [ -w "$dynamic_dir" ] || [ "$dry_run" = 1 ] || fail "$dynamic_dir is not writable"
  # The switch stages its file in the parent of the watched directory (see replace_active_file).
  [ -w "$(dirname "$dynamic_dir")" ] || [ "$dry_run" = 1 ] || fail "$(dirname "$dynamic_dir") is not writable (the switch stages active-color.yml there)"
  [ "$(stat -c %d "$(dirname "$dynamic_dir")")" = "$(stat -c %d "$dynamic_dir")" ] ||
    fail "$(dirname "$dynamic_dir") and $dynamic_dir are on different filesystems: the switch's rename would not be atomic"
  [ -z "$targets_file" ] || [ "$dry_run" = 1 ] || [ -w "$(dirname "$targets_file")" ] ||
    fail "$(dirname "$targets_file") is not writable (PROMETHEUS_TARGETS_FILE)"
  [ "$dry_run" = 1 ] && return 0
  mkdir -p "$state_dir" || fail "cannot create $state_dir (DEPLOY_STATE_DIR)"
  # Deploy state is never tracked: the targets file is written on first use, listing both colors
  # (what `docker compose up -d` starts), and kept by every deploy after that.
  if [ -n "$targets_file" ] && [ ! -e "$targets_file" ]; then
    scrape blue green
  fi
}

# runtime_prerequisites COMMAND: the runtime's own needs. compose: a Docker CLI, an engine it can
# reach, Compose v2. local: the binary a deploy installs, and k6 for its smoke test.
runtime_prerequisites() {
  local command=$1 out
  case $runtime in
    compose)
      command -v docker >/dev/null 2>&1 || fail "docker is required for DEPLOY_RUNTIME=compose (not found on PATH)"
      if ! out=$(timeout 10 docker info --format '{{.ServerVersion}}' 2>&1); then
        fail "the Docker engine is not reachable for DEPLOY_RUNTIME=compose: $(printf '%s' "$out" | head -n 1)"
      fi
      timeout 10 docker compose version >/dev/null 2>&1 ||
        fail "Docker Compose v2 is required for DEPLOY_RUNTIME=compose ('docker compose version' failed)"
      ;;
    local)
      if [ "$command" = deploy ]; then
        if [ "${LOCAL_BUILD:-0}" = 1 ]; then
          [ -x "$root/app/node_modules/.bin/bun" ] || fail "LOCAL_BUILD=1 needs $root/app/node_modules/.bin/bun (cd app && npm ci)"
        else
          [ -x "$deploy_binary" ] || fail "no binary at $deploy_binary (build it: cd app && bun run build)"
        fi
        k6_present || fail "k6 $K6_VERSION is required for the smoke test: not on PATH nor in $root/.tools/bin, and no go to build it"
      fi
      ;;
  esac
}

# k6_present: k6_bin would find the pinned k6 or could build it.
k6_present() {
  local candidate
  for candidate in "$(command -v k6 || true)" "$root/.tools/bin/k6"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" version 2>/dev/null | grep -q "k6 $K6_VERSION "; then
      return 0
    fi
  done
  command -v go >/dev/null 2>&1
}

# scrape_step DESCRIPTION COLOR...: the Prometheus targets step, when a targets file is kept.
scrape_step() {
  local description=$1
  shift
  [ -z "$targets_file" ] || step "$description" scrape "$@"
}

# --- the deploy and rollback sequence ---------------------------------------------------------

# begin ACTION FROM TARGET: takes the lock and starts the clock; from here, failures go to abort.
begin() {
  action=$1 from=$2 target=$3 version=unknown
  started_at=$(date +%s)
  printf '%s: %s -> %s (runtime %s%s)\n' "$action" "$from" "$target" "$runtime" "$([ "$dry_run" = 1 ] && echo ', dry run')"
  if [ "$dry_run" = 1 ]; then
    run take_lock "$action"
  else
    step "take the deploy lock" take_lock "$action"
  fi
  phase=prepare
}

elapsed() { printf '%s\n' "$(($(date +%s) - started_at))"; }

finish() {
  phase="done"
  if [ "$dry_run" = 1 ]; then
    printf 'dry run of %s to %s: nothing was changed\n' "$action" "$target"
    return 0
  fi
  audit "$action" "$from" "$target" "$version" ok "$(elapsed)" ""
  printf '%s to %s done in %ss: traffic on %s (version %s)\n' "$action" "$target" "$(elapsed)" "$target" "$version"
}

# abort REASON: the one exit of a failed deploy or rollback. Before the switch the target is
# stopped and traffic never moved; after it the previous file is restored and the target drained,
# so its clients resume on the color that kept serving.
abort() {
  local reason=$1 result=failed
  local failed_phase=$phase
  phase="done"
  trap '' INT TERM
  set +e
  case $failed_phase in
    prepare)
      step "stop $target (traffic stays on $from)" stop_color "$target"
      scrape_step "Prometheus: scrape $from only" "$from"
      reason="$reason; traffic stays on $from"
      ;;
    switched)
      step "roll back: restore the previous active-color.yml" restore_previous_file
      step "verify the front door reaches $from" verify_front "$from" || reason="$reason; WARNING: the front door does not report $from yet"
      step "drain $target back onto $from" drain "$target"
      scrape_step "Prometheus: scrape $from only" "$from"
      result=rolled-back
      reason="$reason; rolled back to $from"
      ;;
    drain)
      # $from has had its SIGTERM and is on its way out: keep ServerDown quiet about it.
      scrape_step "Prometheus: scrape $target only" "$target"
      reason="$reason; traffic is on $target, $from may still be draining"
      ;;
  esac
  audit "$action" "$from" "$target" "$version" "$result" "$(elapsed)" "$reason"
  cleanup
  printf '%s failed: %s\n' "$action" "$reason" >&2
  exit 1
}

cmd_deploy() {
  local wanted=${1:-} active
  active=$(active_color)
  wanted=${wanted:-$(other_color "$active")}
  [ "$wanted" != "$active" ] || fail "$wanted is the active color already; deploy to $(other_color "$wanted") instead"
  begin deploy "$active" "$wanted"
  step "start $target" rt_start "$target" build || fail "could not start $target"
  scrape_step "Prometheus: scrape $from and $target" "$from" "$target"
  step "wait for $target /health/ready" wait_ready "$target" || fail "$ready_failure"
  version=$(color_version "$target")
  step "smoke test against $target (k6, $smoke_vus VUs, $smoke_duration)" smoke "$target" ||
    fail "smoke test against $target failed"
  phase=switched
  step "switch Traefik to $target" switch_to "$target" || fail "could not replace $active_file"
  step "verify the front door reaches $target" verify_front "$target" ||
    fail "the front door did not report $target $verify_count times in a row within ${verify_timeout}s"
  step "post-switch gate on $target (${gate_seconds}s)" gate "$target" || fail "$gate_reason"
  phase=drain
  handover_begin "$from" "$target"
  step "drain $from" drain "$from"
  scrape_step "Prometheus: scrape $target only" "$target"
  step "hand-over: $from's clients on $target" handover "$target"
  finish
}

cmd_rollback() {
  local active
  active=$(active_color)
  begin rollback "$active" "$(other_color "$active")"
  step "start $target with the version it last ran" ensure_up "$target" || fail "could not start $target"
  scrape_step "Prometheus: scrape $from and $target" "$from" "$target"
  step "wait for $target /health/ready" wait_ready "$target" || fail "$ready_failure"
  version=$(color_version "$target")
  phase=switched
  step "switch Traefik to $target" switch_to "$target" || fail "could not replace $active_file"
  step "verify the front door reaches $target" verify_front "$target" ||
    fail "the front door did not report $target $verify_count times in a row within ${verify_timeout}s"
  phase=drain
  handover_begin "$from" "$target"
  step "drain $from" drain "$from"
  scrape_step "Prometheus: scrape $target only" "$target"
  step "hand-over: $from's clients on $target" handover "$target"
  finish
}

ensure_up() {
  if [ "$dry_run" != 1 ] && rt_running "$1"; then
    note "$1 is running"
    return 0
  fi
  rt_start "$1" keep
}

color_version() {
  [ "$dry_run" = 1 ] && { echo unknown; return 0; }
  { rt_http "$1" /health || echo '{}'; } | json_field version
}

# wait_ready COLOR: polls /health/ready; gives up early when the process is gone.
wait_ready() {
  local color=$1
  if [ "$dry_run" = 1 ]; then
    note "[dry-run] poll $(rt_url "$color")/health/ready until 200, growing sleeps, ${ready_timeout}s deadline"
    return 0
  fi
  target_died=0
  ready_failure="$color was not ready within ${ready_timeout}s"
  poll_until "$ready_timeout" ready_or_gone "$color" || true
  if [ "$target_died" = 1 ]; then
    ready_failure="$color exited before it was ready"
    note "$color exited; its last lines:"
    rt_logs "$color" | sed 's/^/      /'
    return 1
  fi
  [ "$(rt_http_code "$color" /health/ready)" = 200 ] || {
    note "$color /health/ready: $(rt_http "$color" /health/ready 2>/dev/null || rt_http_code "$color" /health/ready)"
    return 1
  }
  note "$color is ready: $(rt_http "$color" /health | jq -c '{status, version, color, redis}' 2>/dev/null)"
}

ready_or_gone() {
  [ "$(rt_http_code "$1" /health/ready)" = 200 ] && return 0
  rt_running "$1" && return 1
  target_died=1
}

smoke() {
  [ -f "$smoke_script" ] || { note "no smoke script at $smoke_script"; return 1; }
  rt_smoke "$1"
}

# verify_front COLOR: new requests through the front door reach COLOR VERIFY_COUNT times in a row.
verify_front() {
  local color=$1 streak=0 seen="" deadline
  if [ "$dry_run" = 1 ]; then
    note "[dry-run] GET $front_url/health until it reports $color $verify_count times in a row (${verify_timeout}s)"
    [ -z "$traefik_api" ] || note "[dry-run] GET $traefik_api/http/services/chat-active@file: websocket-$color"
    return 0
  fi
  deadline=$(($(now_ms) + verify_timeout * 1000))
  while [ "$streak" -lt "$verify_count" ] && [ "$(now_ms)" -lt "$deadline" ]; do
    seen=$(front_color)
    if [ "$seen" = "$color" ]; then streak=$((streak + 1)); else streak=0; fi
    [ "$streak" -ge "$verify_count" ] || sleep 0.2
  done
  if [ "$streak" -lt "$verify_count" ]; then
    note "$front_url/health last reported: ${seen:-no answer}"
    return 1
  fi
  note "$front_url/health reported $color $verify_count times in a row"
  [ -n "$traefik_api" ] || return 0
  local answer names
  if ! answer=$(curl -fsS --max-time 2 "$traefik_api/http/services/chat-active@file" 2>/dev/null); then
    note "Traefik API not reachable at $traefik_api; relying on the front door"
    return 0
  fi
  names=$(jq -r '[.weighted.services[]? | select((.weight // 1) > 0) | .name | sub("@.*$"; "")] | join(",")' <<<"$answer")
  if [ "$names" != "websocket-$color" ]; then
    note "Traefik API: chat-active -> ${names:-nothing}"
    return 1
  fi
  note "Traefik API: chat-active -> $names"
}

# gate COLOR: for GATE_SECONDS, the share of COLOR's incoming frames answered with an error frame
# (websocket_errors_total over websocket_messages_total{direction="in"}, both since the switch)
# must stay at or below GATE_MAX_ERROR_RATIO, COLOR must keep answering, and the front door must
# not answer 5xx twice in a row. Sets gate_reason when it fails.
gate() {
  local color=$1 metrics errors0 frames0 errors frames deadline code bad_front=0
  gate_reason=""
  if [ "$gate_seconds" = 0 ]; then
    note "gate disabled (GATE_SECONDS=0)"
    return 0
  fi
  if [ "$dry_run" = 1 ]; then
    note "[dry-run] every ${gate_interval}s for ${gate_seconds}s: error frames / frames in on $color <= $gate_max_error_ratio"
    return 0
  fi
  metrics=$(rt_http "$color" /metrics) || { gate_reason="$color does not answer /metrics"; return 1; }
  errors0=$(metric_sum websocket_errors_total <<<"$metrics")
  frames0=$(metric_sum websocket_messages_total 'direction="in"' <<<"$metrics")
  deadline=$(($(now_ms) + gate_seconds * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    sleep "$gate_interval"
    metrics=$(rt_http "$color" /metrics) || { gate_reason="$color stopped answering /metrics during the gate"; return 1; }
    errors=$(($(metric_sum websocket_errors_total <<<"$metrics") - errors0))
    frames=$(($(metric_sum websocket_messages_total 'direction="in"' <<<"$metrics") - frames0))
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$front_url/health" || true)
    if [[ $code == 5* ]]; then bad_front=$((bad_front + 1)); else bad_front=0; fi
    note "$color: $errors error frames / $frames frames in; front door /health: $code"
    if [ "$bad_front" -ge 2 ]; then
      gate_reason="the front door answered $code twice in a row after the switch"
      return 1
    fi
    if [ "$frames" -ge "$gate_min_frames" ] && awk -v e="$errors" -v f="$frames" -v max="$gate_max_error_ratio" 'BEGIN { exit !(e / f > max) }'; then
      gate_reason="error rate on $color $errors/$frames frames is above GATE_MAX_ERROR_RATIO=$gate_max_error_ratio"
      return 1
    fi
  done
  note "gate passed: $errors error frames / $frames frames in"
}

# drain COLOR: SIGTERM, wait until its websocket_connections_total is 0 or DRAIN_TIMEOUT, stop it.
drain() {
  local color=$1
  if [ "$dry_run" = 1 ]; then
    rt_stop_begin "$color"
    note "[dry-run] poll $(rt_url "$color")/metrics until websocket_connections_total is 0 (${drain_timeout_ms} ms)"
    rt_stop_finish "$color"
    return 0
  fi
  if ! rt_running "$color"; then
    note "$color is not running; nothing to drain"
    return 0
  fi
  rt_stop_begin "$color"
  if poll_until "$(((drain_timeout_ms + 999) / 1000))" drained "$color"; then
    note "$color has no connections left"
  else
    note "$color still had connections at DRAIN_TIMEOUT=${drain_timeout_ms} ms; stopping it anyway"
  fi
  rt_stop_finish "$color"
}

# handover_begin FROM TARGET: what the hand-over is measured against, read just before the drain:
# the connections FROM holds, TARGET's connections and the upgrades refused so far.
handover_begin() {
  local metrics
  [ "$dry_run" = 1 ] && return 0
  metrics=$(rt_http "$1" /metrics 2>/dev/null || true)
  handover_expected=$(metric_sum websocket_connections_total <<<"$metrics")
  metrics=$(rt_http "$2" /metrics 2>/dev/null || true)
  handover_base=$(metric_sum websocket_connections_total <<<"$metrics")
  handover_refused_base=$(metric_sum websocket_rate_limited_total 'limit="ip"' <<<"$metrics")
  handover_front_base=$(front_refusals)
  handover_started=$(now_ms)
  handover_back_ms=""
}

# front_refusals: WebSocket upgrades the front door answered 429, from Traefik's metrics; "-" when
# TRAEFIK_METRICS_URL is not set or does not answer.
front_refusals() {
  [ -n "$traefik_metrics" ] || { echo -; return 0; }
  { curl -fsS --max-time 2 "$traefik_metrics" 2>/dev/null || echo "unreachable 1"; } |
    awk '/^unreachable/ { gone = 1 } /^traefik_router_requests_total\{/ && /code="429"/ && /protocol="websocket"/ { sum += $NF }
      END { if (gone) print "-"; else printf "%.0f\n", sum + 0 }'
}

# handover TARGET: waits until TARGET has gained as many connections as the old color held when its
# drain began (HANDOVER_TIMEOUT seconds after the drain), then prints the figures. Clients that left
# on their own during the deploy never arrive: the wait then ends at the timeout, which is reported
# and does not fail the deploy (traffic is on TARGET either way).
handover() {
  local target=$1 moved refused front
  if [ "$dry_run" = 1 ]; then
    note "[dry-run] poll $(rt_url "$target")/metrics until it holds the drained color's connections (${handover_timeout}s)"
    return 0
  fi
  if poll_until "$handover_timeout" arrived "$target"; then
    # A client is back once its rooms are rejoined with the messages it missed: wait until the
    # target's rejoins (resume_total) have stopped rising for a second.
    rejoins_settled "$target"
    note "all $handover_expected connections are on $target"
  else
    note "after ${handover_timeout}s (HANDOVER_TIMEOUT) ${handover_moved:-0} of $handover_expected connections are on $target; the others may have left"
  fi
  moved=${handover_moved:-0}
  local target_metrics
  # Unanswered /metrics: the count is unknown, not negative.
  if target_metrics=$(rt_http "$target" /metrics 2>/dev/null); then
    refused=$(($(metric_sum websocket_rate_limited_total 'limit="ip"' <<<"$target_metrics") - handover_refused_base))
  else
    refused="-"
  fi
  front=$(front_refusals)
  [ "$front" = - ] || [ "$handover_front_base" = - ] || front=$((front - handover_front_base))
  note "hand-over: $((moved < handover_expected ? moved : handover_expected)) of $handover_expected connections moved to $target in $(awk -v ms="${handover_back_ms:-$(($(now_ms) - handover_started))}" 'BEGIN { printf "%.1f", ms / 1000 }')s; upgrades refused: $refused by $target (per-IP limit), ${front/#-/not counted (TRAEFIK_METRICS_URL unset)} by the front door"
}

rejoins_settled() {
  local before after deadline
  deadline=$(($(now_ms) + handover_timeout * 1000))
  after=$(rt_http "$1" /metrics 2>/dev/null | metric_sum resume_total) || return 0
  while [ "$(now_ms)" -lt "$deadline" ]; do
    before=$after
    sleep 1
    after=$(rt_http "$1" /metrics 2>/dev/null | metric_sum resume_total) || return 0
    [ "$after" != "$before" ] || break
  done
  handover_back_ms=$(($(now_ms) - handover_started - 1000))
}

arrived() {
  local open
  open=$(rt_http "$1" /metrics 2>/dev/null | metric_sum websocket_connections_total) || return 1
  handover_moved=$((open - handover_base))
  [ "$handover_moved" -ge "$handover_expected" ] || return 1
  handover_back_ms=$(($(now_ms) - handover_started))
}

drained() {
  local open
  # No answer means the process finished its drain and exited.
  open=$(rt_http "$1" /metrics 2>/dev/null | metric_sum websocket_connections_total) || return 0
  rt_running "$1" || return 0
  note "$1: $open connections open"
  [ "$open" = 0 ]
}

stop_color() {
  rt_running "$1" || [ "$dry_run" = 1 ] || { note "$1 is not running"; return 0; }
  rt_stop_begin "$1"
  rt_stop_finish "$1"
}

# --- status and history -----------------------------------------------------------------------

cmd_status() {
  local active color health ready front lock_owner
  active=$(active_color)
  printf 'active color: %s (%s)\n' "$active" "$active_file"
  front=$(front_color)
  printf 'front door:   %s (%s)\n' "$([ "$front" = - ] || [ -z "$front" ] && echo "no answer" || echo "$front")" "$front_url"
  {
    printf 'COLOR\tACTIVE\tRUNNING\tREADY\tSTATUS\tVERSION\tCONNECTIONS\tINSTANCE\n'
    for color in blue green; do
      if rt_running "$color"; then
        health=$(rt_http_any "$color" /health 2>/dev/null || echo '{}')
        ready=$([ "$(rt_http_code "$color" /health/ready)" = 200 ] && echo yes || echo no)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$color" "$([ "$color" = "$active" ] && echo yes || echo no)" yes "$ready" \
          "$(json_field status <<<"$health")" "$(json_field version <<<"$health")" \
          "$(json_field connections <<<"$health")" "$(json_field instanceId <<<"$health")"
      else
        printf '%s\t%s\tno\t-\t-\t-\t-\t-\n' "$color" "$([ "$color" = "$active" ] && echo yes || echo no)"
      fi
    done
  } | column -t -s $'\t'
  lock_file=$state_dir/deploy.lock
  if [ -f "$lock_file" ] && ! flock -n "$lock_file" true 2>/dev/null; then
    lock_owner=$(head -n 1 "$lock_file" 2>/dev/null || true)
    printf 'deploy in progress: %s\n' "${lock_owner:-owner unknown}"
  fi
  printf '\nlast deploys:\n'
  print_history 5
}

cmd_history() {
  print_history 0
}

# --- entry point ------------------------------------------------------------------------------

on_exit() {
  local rc=$?
  if [ -n "${phase:-}" ] && [ "$phase" != "done" ]; then
    abort "unexpected failure (exit $rc) in: ${failed_command:-unknown command}"
  fi
  cleanup
}

cleanup() {
  [ -z "${active_tmp:-}" ] || rm -f "$active_tmp"
  release_lock
}

main() {
  local command="" args=()
  dry_run=0
  while [ $# -gt 0 ]; do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --dry-run) dry_run=1 ;;
      -*) usage_error "unknown option $1" ;;
      *)
        if [ -z "$command" ]; then command=$1; else args+=("$1"); fi
        ;;
    esac
    shift
  done
  [ -n "$command" ] || usage_error "no command given"
  configure
  trap on_exit EXIT
  trap 'failed_command=$BASH_COMMAND' ERR
  trap 'fail "interrupted by SIGINT"' INT
  trap 'fail "interrupted by SIGTERM"' TERM
  case $command in
    deploy)
      [ "${#args[@]}" -le 1 ] || usage_error "deploy takes at most one color"
      case ${args[0]:-} in blue | green | "") ;; *) usage_error "unknown color ${args[0]}: expected blue or green" ;; esac
      preflight deploy
      cmd_deploy "${args[0]:-}"
      ;;
    rollback | status | history)
      [ "${#args[@]}" -eq 0 ] || usage_error "$command takes no arguments"
      [ "$command" = history ] || preflight "$command"
      "cmd_$command"
      ;;
    *) usage_error "unknown command $command" ;;
  esac
}

main "$@"
