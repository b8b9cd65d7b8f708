#!/usr/bin/env bash
# Runs every test of the project. Installs what the tests need when it is missing: Debian packages
# (redis-server, prometheus/promtool, chromium, shellcheck, bats, jq), the app's npm dependencies
# (Bun among them), then builds the binary and runs the suites.
set -Eeuo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

usage() {
  cat <<USAGE
Usage: scripts/test.sh [bun test filters...]
Installs test dependencies, builds app/dist/realtime-server and runs all tests.
Arguments are passed to 'bun test' to run only matching test files.
USAGE
}

system_deps() {
  need_apt jq jq
  need_apt redis-server redis-server
  need_apt redis-cli redis-tools
  # The write-behind tests start a real PostgreSQL server (app/test/helpers/postgres.ts).
  need_apt /usr/lib/postgresql/15/bin/postgres postgresql
  need_apt shellcheck shellcheck
  need_apt curl curl
  # The end-to-end browser tests drive Debian's Chromium through playwright-core.
  need_apt chromium chromium
}

# k6 is built once here, before the tests that run it (the load tests and the deploy gate).
install_k6() {
  k6_bin "$root" >/dev/null
}

bun_tests() {
  local out=$root/app/test-output
  mkdir -p "$out"
  cd "$root/app"
  # Sockets for the connection-scale tests; stays within the machine's per-process limit.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local rc=0 pass fail
  ./node_modules/.bin/bun test --timeout 60000 "$@" 2>&1 | tee "$out/bun-test.log" || rc=$?
  pass=$(grep -Eo '^ *[0-9]+ pass' "$out/bun-test.log" | tail -n 1 | grep -Eo '[0-9]+' || echo 0)
  fail=$(grep -Eo '^ *[0-9]+ fail' "$out/bun-test.log" | tail -n 1 | grep -Eo '[0-9]+' || echo 0)
  printf '%s passed, %s failed\n' "$pass" "$fail"
  return "$rc"
}

lint_scripts() {
  shellcheck -x "$root"/scripts/*.sh "$root"/.ci/run
}

# --- monitoring: Prometheus configuration, alert rules and their unit tests -----------------------
# Installs Debian's prometheus package (promtool, and the prometheus server that the live dashboard
# test in app/test/monitoring starts) when missing, then runs promtool's own checks.
promtool_checks() {
  local prom=$root/monitoring/prometheus
  need_apt promtool prometheus
  promtool check config "$prom/prometheus.yml"
  promtool check rules "$prom"/rules/*.yml
  promtool test rules "$prom"/tests/*.yml
}

# --- monitoring: Alertmanager configuration and the redis_exporter the live tests run ------------
# Installs Debian's prometheus-alertmanager (amtool, and the alertmanager the live alert test starts)
# and prometheus-redis-exporter when missing; checks the config, that each severity reaches its
# receiver (app/test/monitoring/alertmanager.test.ts does it for every alert), and the entrypoint.
alertmanager_checks() {
  local am=$root/monitoring/alertmanager
  need_apt amtool prometheus-alertmanager || return 1
  need_apt prometheus-redis-exporter prometheus-redis-exporter || return 1
  amtool check-config "$am/alertmanager.yml" || return 1
  amtool config routes test --config.file="$am/alertmanager.yml" --verify.receivers=page severity=critical alertname=ServerDown || return 1
  amtool config routes test --config.file="$am/alertmanager.yml" --verify.receivers=team severity=warning alertname=HighCPUUsage || return 1
  amtool config routes test --config.file="$am/alertmanager.yml" --verify.receivers=team alertname=WithoutSeverity || return 1
  # POSIX sh: it runs in the Alertmanager image, which has busybox and no bash.
  shellcheck -s sh "$am/entrypoint.sh"
}

# --- load test gate: the k6 smoke scenario, small, against the compiled binary ---------------------
# Starts app/dist/realtime-server on a free loopback port, runs app/loadtest/smoke.js with the pinned
# k6 (built by k6_bin when missing) and stops the server; fails when a threshold fails.
k6_smoke() {
  local k6 port pid rc=0 deadline
  need_apt curl curl
  k6=$(k6_bin "$root")
  mkdir -p "$root/app/test-output"
  port=$("$root/app/node_modules/.bin/bun" -e \
    'const s = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() }); console.log(s.port); s.stop(true)')
  rm -rf "$root/app/test-output/k6-smoke-data"
  DATA_DIR="$root/app/test-output/k6-smoke-data" PORT=$port HOST=127.0.0.1 LOG_LEVEL=warn "$root/app/dist/realtime-server" >"$root/app/test-output/k6-smoke-server.log" 2>&1 &
  pid=$!
  deadline=$((SECONDS + 15))
  until curl -fs "http://127.0.0.1:$port/health" >/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      printf 'the server did not answer /health on port %s\n' "$port" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
  K6_NO_USAGE_REPORT=true BASE_URL="http://127.0.0.1:$port" VUS=${K6_SMOKE_VUS:-4} DURATION=${K6_SMOKE_DURATION:-10s} \
    "$k6" run --quiet --no-color --summary-export "$root/app/test-output/k6-smoke-summary.json" "$root/app/loadtest/smoke.js" || rc=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return "$rc"
}

# Repeats each failed test's output (its error and the lines it printed) at the end of the run, where
# a reader of a long CI log looks first: bun prints them in the middle, among 700 passing tests.
bun_test_failures() {
  local log=$root/app/test-output/bun-test.log
  [ -f "$log" ] || return 0
  grep -q '^(fail) ' "$log" || return 0
  printf '\nfailed tests, each with the last 40 lines it printed (all in app/test-output/bun-test.log):\n'
  # A test's output is what follows the previous test's result line; the first summary line ends the
  # report, whose list repeats the failures without their errors.
  awk '
    /^ *[0-9]+ tests? failed:$/ { exit }
    /^\((pass|skip|todo)\) / { n = 0; next }
    /^\(fail\) / {
      first = n > 40 ? n - 40 : 0
      print "----"
      for (i = first; i < n; i++) print buf[i]
      print
      n = 0
      next
    }
    { buf[n++] = $0 }
  ' "$log"
}

# The deploy script's sourced parts in scripts/deploy/, which lint_scripts (scripts/*.sh) does not reach.
lint_deploy_scripts() {
  shellcheck -x "$root"/scripts/deploy/*.sh
}

main() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
  esac
  # A failed step is reported and the independent steps after it still run; the exit status is 1
  # when any step failed. Steps that cannot run without an earlier one say so instead.
  local deps="install app dependencies" build="build the binary"
  check "install system packages" system_deps
  check "$deps" app_deps "$root/app"
  check "typecheck" --after "$deps" bash -c "cd '$root/app' && ./node_modules/.bin/tsc -p ."
  check "format and lint (Biome)" --after "$deps" bash -c "cd '$root/app' && ./node_modules/.bin/biome ci ."
  check "$build" --after "$deps" bash -c "cd '$root/app' && ./node_modules/.bin/bun run build"
  check "shellcheck" lint_scripts
  check "shellcheck scripts/deploy" lint_deploy_scripts
  check "promtool" promtool_checks
  check "alertmanager" alertmanager_checks
  check "install k6" install_k6
  check "bun test" --after "$deps" --after "$build" bun_tests "$@"
  check "k6 smoke" --after "$build" --after "install k6" k6_smoke
  bun_test_failures
  check_summary
}

main "$@"
