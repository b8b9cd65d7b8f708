#!/usr/bin/env bash
# Shared helpers for the project's scripts: timed steps and installing what a machine lacks.

# step NAME CMD...: prints what it does, runs it, prints how long it took. CMD runs inside an
# `&&` list, where `set -e` does not apply: a function run this way checks its own commands.
step() {
  local name=$1 started rc
  shift
  started=$(date +%s)
  printf '==> %s\n' "$name"
  "$@" && rc=0 || rc=$?
  printf '<== %s (%ss)%s\n' "$name" "$(($(date +%s) - started))" "$([ "$rc" -eq 0 ] || echo ", failed with $rc")"
  return "$rc"
}

# check NAME [--after STEP]... CMD...: a step of a run that goes on after a failure (the test
# command). CMD runs in a subshell with `set -e` in force, so any failing command inside it fails
# the step; the failure is recorded and the run continues. A step whose --after step failed is
# skipped. check_summary reports the failures and sets the exit code.
checks_failed=()
check() {
  local name=$1 started rc=0 needed
  shift
  while [ "${1:-}" = --after ]; do
    for needed in "${checks_failed[@]}"; do
      if [ "$needed" = "$2" ]; then
        printf '==> %s\n<== %s skipped: %s failed\n' "$name" "$name" "$2"
        checks_failed+=("$name")
        return 0
      fi
    done
    shift 2
  done
  started=$(date +%s)
  printf '==> %s\n' "$name"
  # A subshell run as a plain statement: set -e holds inside it, whatever CMD is.
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  printf '<== %s (%ss)%s\n' "$name" "$(($(date +%s) - started))" "$([ "$rc" -eq 0 ] || echo ", failed with $rc")"
  [ "$rc" -eq 0 ] || checks_failed+=("$name")
  return 0
}

# check_summary: one line per failed step; exit status 1 when any failed.
check_summary() {
  if [ "${#checks_failed[@]}" -eq 0 ]; then
    printf 'all steps passed\n'
    return 0
  fi
  printf 'failed steps (%s):\n' "${#checks_failed[@]}" >&2
  printf '  %s\n' "${checks_failed[@]}" >&2
  return 1
}

_apt_updated=""
# need_apt COMMAND PACKAGE: installs PACKAGE from Debian when COMMAND is missing.
need_apt() {
  local command=$1 package=$2 sudo=""
  command -v "$command" >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "$_apt_updated" ]; then
    $sudo apt-get update -qq
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}

# app_deps: installs the app's npm dependencies (Bun among them) when package-lock.json changed.
app_deps() {
  local app=$1
  if [ ! -x "$app/node_modules/.bin/bun" ] || [ "$app/package-lock.json" -nt "$app/node_modules/.package-lock.json" ]; then
    (cd "$app" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# K6_VERSION is the k6 release the load tests and the deploy gate are written for.
K6_VERSION=${K6_VERSION:-v1.8.1}
# CENTRIFUGO_VERSION is the Centrifugo release bench:redis measures beside this server.
CENTRIFUGO_VERSION=${CENTRIFUGO_VERSION:-v6.9.1}

# k6_bin ROOT: prints the path of a k6 binary of the pinned release: one on PATH or in
# ROOT/.tools/bin when it is that release, else one built there from the Go module proxy.
k6_bin() {
  local root=$1 candidate
  for candidate in "$(command -v k6 || true)" "$root/.tools/bin/k6"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" version 2>/dev/null | grep -q "k6 $K6_VERSION "; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  printf 'installing k6 %s with go install (a few minutes on a new machine)\n' "$K6_VERSION" >&2
  GOBIN="$root/.tools/bin" GOFLAGS=-mod=mod go install "go.k6.io/k6@$K6_VERSION" >&2
  printf '%s\n' "$root/.tools/bin/k6"
}

# centrifugo_release BINARY: the Centrifugo release of a binary. A release build says it in
# `centrifugo version`; one built with `go install` says v0.0.0 there, and its module version is
# read from the binary's build information instead.
centrifugo_release() {
  local said
  said=$("$1" version 2>/dev/null | grep -Eo 'v[0-9]+\.[0-9]+\.[0-9]+' | head -n 1)
  if [ "$said" = v0.0.0 ] && command -v go >/dev/null; then
    go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/centrifugal/centrifugo/v6" { print $3 }'
  else
    printf '%s\n' "$said"
  fi
}

# centrifugo_bin ROOT: prints the path of a Centrifugo binary of the pinned release (the baseline
# of the scale-out benchmark): one on PATH or in ROOT/.tools/bin when it is that release, else one
# built there from the Go module proxy. Fails (status 1, nothing printed) when Go is not installed.
centrifugo_bin() {
  local root=$1 candidate
  for candidate in "$(command -v centrifugo || true)" "$root/.tools/bin/centrifugo"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(centrifugo_release "$candidate")" = "$CENTRIFUGO_VERSION" ]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  command -v go >/dev/null || return 1
  printf 'installing Centrifugo %s with go install (a few minutes on a new machine)\n' "$CENTRIFUGO_VERSION" >&2
  GOBIN="$root/.tools/bin" GOFLAGS=-mod=mod go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION" >&2 || return 1
  printf '%s\n' "$root/.tools/bin/centrifugo"
}
