#!/usr/bin/env bash
# Quick start: installs the app's dependencies (Bun comes from npm) and runs the server on
# its defaults: messages in app/data/messages.sqlite. Environment variables (docs/operations.md) pass through.
set -Eeuo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

main() {
  step "install app dependencies" app_deps "$root/app" >&2
  step "bundle the test page script" bash -c "cd '$root/app' && ./node_modules/.bin/bun run build:client" >&2
  local port=${PORT:-3001}
  printf '\nTest page: http://localhost:%s/\n\n' "$port" >&2
  cd "$root/app"
  exec ./node_modules/.bin/bun run src/index.ts
}

main "$@"
