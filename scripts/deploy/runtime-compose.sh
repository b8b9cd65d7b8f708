#!/usr/bin/env bash
# shellcheck disable=SC2154 # the variables come from configure() in scripts/blue-green-deploy.sh
# DEPLOY_RUNTIME=compose (the default): each color is the compose service websocket-<color> of
# docker-compose.yml. The colors publish no port, so the script reaches them with
# `docker compose exec` (the image has curl) and runs k6 in a container on the compose network.
# Sourced by scripts/blue-green-deploy.sh.

compose=(docker compose --project-directory "$root")
compose() { "${compose[@]}" "$@"; }

rt_url() { printf 'http://websocket-%s:3001\n' "$1"; }

rt_running() {
  [ -n "$(compose ps --status running --quiet "websocket-$1" 2>/dev/null)" ]
}

rt_http() {
  compose exec -T "websocket-$1" curl -fsS --max-time 2 "${metrics_auth[@]}" "http://127.0.0.1:3001$2" 2>/dev/null
}

# rt_http_any COLOR PATH: the body whatever the status (a draining color answers /health with 503).
rt_http_any() {
  compose exec -T "websocket-$1" curl -sS --max-time 2 "${metrics_auth[@]}" "http://127.0.0.1:3001$2" 2>/dev/null
}

rt_http_code() {
  compose exec -T "websocket-$1" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:3001$2" 2>/dev/null || echo 000
}

# rt_start COLOR build|keep: build rebuilds the image and recreates the container when it changed;
# keep starts the image the color ran last (rollback).
rt_start() {
  local color=$1 mode=$2
  if [ "$mode" = build ]; then
    run "${compose[@]}" up -d --build --no-deps "websocket-$color"
  else
    run "${compose[@]}" up -d --no-build --no-deps "websocket-$color"
  fi
}

# rt_stop_begin COLOR: `docker compose stop` sends SIGTERM and waits; it runs in the background so
# the drain can be watched meanwhile. stop_grace_period in docker-compose.yml covers the drain.
rt_stop_begin() {
  if [ "$dry_run" = 1 ]; then
    run "${compose[@]}" stop "websocket-$1"
    return 0
  fi
  rt_running "$1" || return 0
  printf '    $ docker compose stop websocket-%s &\n' "$1"
  compose stop "websocket-$1" >/dev/null 2>&1 &
  compose_stop_pid=$!
}

rt_stop_finish() {
  [ "$dry_run" = 1 ] && return 0
  if [ -n "${compose_stop_pid:-}" ]; then
    wait "$compose_stop_pid" || true
    compose_stop_pid=""
  fi
  rt_running "$1" || return 0
  run "${compose[@]}" stop "websocket-$1"
}

rt_smoke() {
  local color=$1
  run docker run --rm --network "${COMPOSE_NETWORK:-realtime-chat}" \
    -v "$(dirname "$smoke_script"):/scripts:ro" \
    -e WS_URL="ws://websocket-$color:3001" -e BASE_URL="http://websocket-$color:3001" \
    -e VUS="$smoke_vus" -e DURATION="$smoke_duration" -e ROOM_PREFIX="smoke-$color-$$" \
    "${K6_IMAGE:-grafana/k6:${K6_VERSION#v}}" run --quiet --no-color --no-usage-report "/scripts/$(basename "$smoke_script")"
}

rt_logs() {
  compose logs --no-color --tail 20 "websocket-$1" 2>/dev/null || true
}
