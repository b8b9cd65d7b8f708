#!/usr/bin/env bash
# Runs one k6 scenario at full size against the compiled server, one instance or two behind Redis,
# while sampling the CPU and resident memory of every server process and of k6 from /proc.
# Writes OUT/<scenario>-<topology>.{summary.json,k6.log,samples.csv} and prints one result line.
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

usage() {
  cat <<USAGE
Usage: app/loadtest/measure.sh SCENARIO TOPOLOGY [OUT_DIR]
  SCENARIO  smoke, ramp, stress, spike or connections (app/loadtest/<SCENARIO>.js)
  TOPOLOGY  single (one instance, memory backends) or redis (two instances sharing a redis-server)
  OUT_DIR   where results go (default: app/test-output/loadtest)
The scenario's variables (VUS, DURATION, ROOM_SIZE, MSG_RATE, SESSION, ...) pass through to k6.
SERVER_BIN is the server binary to run (default: app/dist/realtime-server). Every connection comes
from 127.0.0.1, so the per-IP upgrade limit is raised to LOAD_CONNECT_RATE (default 100000) per second.
Exit codes: 0 thresholds passed, 1 a threshold failed or the run broke, 2 usage error.
USAGE
}

pids=()
sampler=""
redis_dir=""

cleanup() {
  if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; fi
  # Newest first: k6, then the servers (so they do not see Redis go away), then redis-server.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  [ -n "$redis_dir" ] && rm -rf "$redis_dir"
  return 0
}
trap cleanup EXIT

free_port() {
  "$root/app/node_modules/.bin/bun" -e \
    'const s = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() }); console.log(s.port); s.stop(true)'
}

wait_http() {
  local url=$1 deadline=$((SECONDS + 20))
  until curl -fs "$url" >/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { printf 'no answer from %s\n' "$url" >&2; return 1; }
    sleep 0.2
  done
}

start_redis() {
  local port
  port=$(free_port)
  redis_dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$redis_dir" --save "" --appendonly no --protected-mode no \
    --maxclients 1000 >"$out/$name.redis.log" 2>&1 &
  pids+=("$!")
  watched+=("redis=$!")
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
  redis_url="redis://127.0.0.1:$port"
}

# start_server N [REDIS_URL]: prints nothing; appends the pid to pids and the ws origin to origins.
start_server() {
  local n=$1 redis=${2:-} port
  port=$(free_port)
  PORT=$port HOST=127.0.0.1 LOG_LEVEL=warn INSTANCE_ID="load-$n" MAX_CONNECTIONS=20000 REDIS_URL=$redis \
    CONNECT_RATE_PER_IP=${LOAD_CONNECT_RATE:-100000} CONNECT_BURST_PER_IP=${LOAD_CONNECT_RATE:-100000} \
    "${SERVER_BIN:-$root/app/dist/realtime-server}" >"$out/$name.server$n.log" 2>&1 &
  pids+=("$!")
  server_pids+=("$!")
  watched+=("server$n=$!")
  wait_http "http://127.0.0.1:$port/health"
  origins+=("ws://127.0.0.1:$port")
}

# sample FILE NAME=PID...: every 2 s, one CSV row per process: time, name, CPU % since the last row,
# RSS in MB, and run-queue wait % (time its threads were runnable but not running, from schedstat:
# high when the machine, not the process, is the limit).
sample() {
  local file=$1 tck entry pid t now ticks rss waited
  shift
  tck=$(getconf CLK_TCK)
  declare -A last=() last_wait=()
  echo "t,process,cpu_percent,rss_mb,runqueue_wait_percent" >"$file"
  t=$(date +%s.%N)
  while :; do
    now=$(date +%s.%N)
    for entry in "$@"; do
      pid=${entry#*=}
      [ -r "/proc/$pid/stat" ] || continue
      # Fields 14 and 15 of stat (after the parenthesised name) are user and system ticks.
      ticks=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
      rss=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
      waited=$(cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{ s += $2 } END { printf "%.0f", s }')
      if [ -n "${last[$pid]:-}" ]; then
        awk -v a="${last[$pid]}" -v b="$ticks" -v dt="$(awk -v x="$now" -v y="$t" 'BEGIN { print x - y }')" -v hz="$tck" \
          -v wa="${last_wait[$pid]}" -v wb="$waited" -v now="$now" -v pid="${entry%%=*}" -v rss="$rss" \
          'BEGIN { printf "%.0f,%s,%.1f,%s,%.1f\n", now, pid, (b - a) / hz / dt * 100, rss, (wb - wa) / 1e9 / dt * 100 }' >>"$file"
      fi
      last[$pid]=$ticks
      last_wait[$pid]=$waited
    done
    printf '%.0f,%s\n' "$now" "$(cut -d' ' -f1 /proc/loadavg)" >>"${file%.samples.csv}.loadavg.csv"
    t=$now
    sleep 2
  done
}

main() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
  esac
  [ $# -ge 2 ] || { usage >&2; exit 2; }
  local scenario=$1 topology=$2
  out=${3:-$root/app/test-output/loadtest}
  [ -f "$here/$scenario.js" ] || { printf 'unknown scenario %s\n' "$scenario" >&2; exit 2; }
  case "$topology" in single | redis) ;; *) usage >&2; exit 2 ;; esac
  mkdir -p "$out"
  name="$scenario-$topology"
  ulimit -n "$(ulimit -Hn)"
  local k6 rc=0 started
  k6=$(k6_bin "$root")
  server_pids=()
  watched=()
  origins=()
  if [ "$topology" = redis ]; then
    start_redis
    start_server 1 "$redis_url"
    start_server 2 "$redis_url"
  else
    start_server 1
  fi
  local list
  list=$(IFS=,; echo "${origins[*]}")
  printf '%s: servers %s (pids %s)\n' "$name" "$list" "${server_pids[*]}"
  started=$(date +%s)
  K6_NO_USAGE_REPORT=true WS_URLS=$list "$k6" run --no-color --quiet \
    --summary-trend-stats 'avg,med,p(95),p(99),max' --summary-export "$out/$name.summary.json" \
    "$here/$scenario.js" >"$out/$name.k6.log" 2>&1 &
  local k6_pid=$!
  pids+=("$k6_pid")
  sample "$out/$name.samples.csv" "${watched[@]}" "k6=$k6_pid" &
  sampler=$!
  wait "$k6_pid" || rc=$?
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  sampler=""
  report "$out" "$name" "$rc" "$(($(date +%s) - started))"
  [ "$rc" -eq 0 ] || return 1
}

# report: one line of figures from the k6 summary and the /proc samples.
report() {
  local out=$1 name=$2 rc=$3 secs=$4 s=$1/$2.summary.json
  local procs
  procs=$(awk -F, 'NR > 1 { n[$2]++; c[$2] += $3; w[$2] += $5; if ($3 > m[$2]) m[$2] = $3; if ($4 > r[$2]) r[$2] = $4 }
    END { for (p in n) printf "%s cpu avg %.0f%% max %.0f%% rss max %.0f MB runqueue wait avg %.0f%%; ", p, c[p] / n[p], m[p], r[p], w[p] / n[p] }' \
    "$out/$name.samples.csv" | sort)
  procs="$procs$(awk -F, '{ n++; l += $2; if ($2 > m) m = $2 } END { if (n) printf "machine load average (1 min) mean %.1f max %.1f", l / n, m }' \
    "$out/$name.loadavg.csv")"
  jq -r --arg name "$name" --arg rc "$rc" --arg secs "$secs" '.metrics as $m |
    "\($name): exit \($rc) in \($secs)s; vus max \($m.vus_max.value // $m.vus_max.max);" +
    " ws_connecting p95 \($m.ws_connecting["p(95)"] // 0 | floor) ms;" +
    " msg_latency med \($m.msg_latency.med // 0 | round) p95 \($m.msg_latency["p(95)"] // 0 | round) p99 \($m.msg_latency["p(99)"] // 0 | round) max \($m.msg_latency.max // 0) ms;" +
    " session_success \(($m.session_success.value // 0) * 100 | . * 100 | floor / 100)% (\($m.session_success.passes // 0)/\(($m.session_success.passes // 0) + ($m.session_success.fails // 0)));" +
    " errors \(($m.errors.value // 0) * 100 | . * 1000 | floor / 1000)%; error_frames \($m.error_frames.count // 0); unexpected_closes \($m.unexpected_closes.count // 0);" +
    " sent \($m.chat_messages_sent.count // 0) (\($m.chat_messages_sent.rate // 0 | floor)/s) received \($m.chat_messages_received.count // 0) (\($m.chat_messages_received.rate // 0 | floor)/s)"' "$s" \
    | tee "$out/$name.result.txt"
  printf '  %s\n' "$procs" | tee -a "$out/$name.result.txt"
}

main "$@"
