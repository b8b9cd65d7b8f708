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
  need_apt shellcheck shellcheck
}

bun_tests() {
  local out=$root/app/test-output
  mkdir -p "$out"
  cd "$root/app"
  # Sockets for the connection-scale tests; stays within the machine's per-process limit.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  ./node_modules/.bin/bun test --timeout 60000 "$@" 2>&1 | tee "$out/bun-test.log"
  local rc=${PIPESTATUS[0]}
  local pass fail
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

main() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
  esac
  step "install system packages" system_deps
  step "install app dependencies" app_deps "$root/app"
  step "typecheck" bash -c "cd '$root/app' && ./node_modules/.bin/tsc -p ."
  step "build the binary" bash -c "cd '$root/app' && ./node_modules/.bin/bun run build"
  step "shellcheck" lint_scripts
  step "promtool" promtool_checks
  step "bun test" bun_tests "$@"
}

main "$@"
