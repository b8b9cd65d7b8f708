#!/usr/bin/env bash
# shellcheck disable=SC2154 # the variables come from configure() in scripts/blue-green-deploy.sh
# Helpers of scripts/blue-green-deploy.sh shared by both runtimes: the one place commands run (or
# are printed under --dry-run), polling with growing sleeps, the lock, the audit log, the Traefik
# file and reading /metrics. Sourced, never run.

# run CMD...: the one place a command that changes something runs. Under --dry-run it is printed
# instead. Values of variables that look like secrets are masked in what is printed.
run() {
  local shown=() arg plain_word='^[A-Za-z0-9_@%+=:,./<>-]+$'
  for arg in "$@"; do
    if [[ $arg =~ ^([A-Z_]*(TOKEN|SECRET|PASSWORD)[A-Z_]*)=.+ ]]; then
      shown+=("${BASH_REMATCH[1]}=***")
    elif [[ $arg =~ $plain_word ]]; then
      shown+=("$arg")
    else
      shown+=("$(printf '%q' "$arg")")
    fi
  done
  if [ "$dry_run" = 1 ]; then
    printf '    [dry-run] %s\n' "${shown[*]}"
    return 0
  fi
  printf '    $ %s\n' "${shown[*]}"
  "$@"
}

# note TEXT: one indented line of progress inside a step.
note() {
  printf '    %s\n' "$*"
}

# now_ms: milliseconds since the epoch.
now_ms() {
  local t
  t=$(date +%s%N)
  printf '%s\n' "$((t / 1000000))"
}

# poll_until TIMEOUT_SECONDS CHECK...: runs CHECK until it succeeds, sleeping 0.2 s, then twice as
# long each time up to POLL_MAX_SLEEP, until the deadline; past it, CHECK runs once more before the
# wait counts as failed, so a slow last sleep does not turn a healthy answer into a failure.
poll_until() {
  local timeout=$1 pause=0.2 deadline
  shift
  deadline=$(($(now_ms) + timeout * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    "$@" && return 0
    sleep "$pause"
    pause=$(awk -v p="$pause" -v m="$POLL_MAX_SLEEP" 'BEGIN { p *= 2; print (p > m ? m : p) }')
  done
  "$@"
}

# --- the lock ---------------------------------------------------------------------------------

# take_lock ACTION: one deploy or rollback at a time. flock is released by the kernel when the
# process ends however it ends; the EXIT trap releases it earlier and clears the owner line.
take_lock() {
  local action=$1
  lock_file=$state_dir/deploy.lock
  exec 9>>"$lock_file"
  if ! flock -n 9; then
    local owner
    owner=$(head -n 1 "$lock_file" 2>/dev/null || true)
    fail "another deploy is running (${owner:-owner unknown}); wait for it or check '$0 status'"
  fi
  printf 'pid %s, %s by %s since %s\n' "$$" "$action" "$deploy_user" "$(date -u +%FT%TZ)" >"$lock_file"
  lock_held=1
}

release_lock() {
  [ "${lock_held:-0}" = 1 ] || return 0
  : >"$lock_file"
  flock -u 9
  lock_held=0
}

# --- the audit log ----------------------------------------------------------------------------

# audit ACTION FROM TO VERSION RESULT DURATION_S REASON: appends one tab-separated line. The file is
# only ever appended to; one short printf is one write, so concurrent readers never see half a line.
audit() {
  [ "$dry_run" = 1 ] && return 0
  local line
  line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%ss\t%s' "$(date -u +%FT%TZ)" "$deploy_user" "$1" "$2" "$3" "$4" "$5" "$6" "${7//$'\t'/ }")
  printf '%s\n' "${line//$'\n'/ }" >>"$history_file"
}

print_history() {
  local limit=${1:-0}
  {
    printf 'TIME\tUSER\tACTION\tFROM\tTO\tVERSION\tRESULT\tDURATION\tREASON\n'
    if [ -s "$history_file" ]; then
      if [ "$limit" -gt 0 ]; then tail -n "$limit" "$history_file"; else cat "$history_file"; fi
    fi
  } | awk -F '\t' -v OFS='\t' '{ if ($9 == "") $9 = "-"; print }' | column -t -s $'\t'
}

# --- the Traefik file -------------------------------------------------------------------------

# active_color: the color active-color.yml sends traffic to.
active_color() {
  local color
  color=$(sed -n 's/^[[:space:]]*-[[:space:]]*name:[[:space:]]*websocket-\(blue\|green\)[[:space:]]*$/\1/p' "$active_file" | head -n 1)
  [ -n "$color" ] || fail "cannot tell the active color from $active_file"
  printf '%s\n' "$color"
}

other_color() {
  case $1 in
    blue) echo green ;;
    green) echo blue ;;
  esac
}

render_active_file() {
  cat <<YAML
# Owned by scripts/blue-green-deploy.sh, which rewrites this whole file (a temporary file beside
# this directory, then mv) to switch colors. Do not edit by hand while a deploy may be running.
# chat-active is defined here and nowhere else.
http:
  services:
    chat-active:
      weighted:
        services:
          - name: websocket-$1
            weight: 1
YAML
}

# check_active_file FILE COLOR: FILE is a complete active-color.yml that sends chat-active to
# websocket-COLOR: not empty, ends with a newline, and has the weighted service's lines as
# render_active_file writes them. Traefik applies whatever it finds in the directory, even an empty
# file (every router then loses chat-active and the front door answers 404), so nothing that fails
# this check is ever renamed into place.
check_active_file() {
  local file=$1 color=$2 line
  [ -s "$file" ] || { note "$file is empty"; return 1; }
  [ "$(tail -c 1 "$file" | od -An -tx1 | tr -d ' ')" = 0a ] || { note "$file does not end with a newline"; return 1; }
  for line in "http:" "  services:" "    chat-active:" "      weighted:" "        services:" \
    "          - name: websocket-$color"; do
    grep -qxF -- "$line" "$file" || { note "$file lacks the line '$line'"; return 1; }
  done
}

# replace_active_file SOURCE COLOR: puts a copy of SOURCE in place of active-color.yml. The copy
# is made beside the watched directory (its parent: the same filesystem, so mv is an atomic
# rename), never inside it: Traefik reads the directory again on any change in it, and a temporary
# file there would start the provider's reload throttle (2 s) and hold the real change back. The
# copy is flushed to disk and checked (check_active_file, and byte for byte against SOURCE) before
# the rename. Every command is checked here: this runs inside step's && list, where set -e is off.
replace_active_file() {
  local source=$1 color=$2 staging
  staging=$(dirname "$dynamic_dir")
  if [ "$(stat -c %d "$staging")" != "$(stat -c %d "$dynamic_dir")" ]; then
    note "$staging and $dynamic_dir are on different filesystems; mv would not be atomic"
    return 1
  fi
  check_active_file "$source" "$color" || return 1
  active_tmp=$(mktemp "$staging/.active-color.XXXXXX") || return 1
  cp "$source" "$active_tmp" || return 1
  sync "$active_tmp" || return 1
  cmp -s "$source" "$active_tmp" || { note "the copy of $source in $active_tmp differs from it"; return 1; }
  check_active_file "$active_tmp" "$color" || return 1
  chmod 0644 "$active_tmp" || return 1
  mv -f "$active_tmp" "$active_file" || return 1
  active_tmp=""
}

# switch_to COLOR: points chat-active at COLOR, keeping a copy of the file it replaces.
switch_to() {
  local color=$1 rendered=$state_dir/active-color.next.yml
  if [ "$dry_run" = 1 ]; then
    run cp "$active_file" "$state_dir/active-color.previous.yml"
    run replace_active_file "$rendered" "$color"
    note "chat-active -> websocket-$color"
    return 0
  fi
  cp "$active_file" "$state_dir/active-color.previous.yml" || { note "cannot keep a copy of $active_file in $state_dir"; return 1; }
  render_active_file "$color" >"$rendered" || { note "cannot write $rendered"; return 1; }
  run replace_active_file "$rendered" "$color" || return 1
  note "chat-active -> websocket-$color"
}

# restore_previous_file: puts back the file switch_to replaced, byte for byte. When the switch
# failed before its rename, active-color.yml still names the previous color and stays untouched.
restore_previous_file() {
  if [ "$dry_run" != 1 ] && grep -qxF -- "          - name: websocket-$from" "$active_file" 2>/dev/null; then
    note "active-color.yml still sends chat-active to websocket-$from"
    return 0
  fi
  run replace_active_file "$state_dir/active-color.previous.yml" "$from"
}

# --- the Prometheus targets file ----------------------------------------------------------------

# render_targets COLOR...: file_sd entries for the colors that should be running.
render_targets() {
  local color address
  printf '%s\n' \
    "# Owned by scripts/blue-green-deploy.sh, which rewrites this whole file (temporary file in this" \
    "# directory, then mv): the colors that should be running, so ServerDown fires for a color that is" \
    "# down by accident, never for the one a deploy stopped. Prometheus rereads it on change."
  for color in "$@"; do
    address=$(rt_url "$color")
    printf -- '- targets: ["%s"]\n  labels:\n    color: %s\n    instance: websocket-%s\n' "${address#*://}" "$color" "$color"
  done
}

# scrape COLOR...: makes PROMETHEUS_TARGETS_FILE list exactly these colors, replacing it atomically
# (a temporary file in its directory, then mv). A failure is reported, never fatal: monitoring does
# not hold up a deploy.
scrape() {
  if [ "$dry_run" = 1 ]; then
    note "[dry-run] $targets_file <- $*"
    return 0
  fi
  local tmp
  if tmp=$(mktemp "$(dirname "$targets_file")/.websocket-targets.XXXXXX") &&
    render_targets "$@" >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$targets_file"; then
    note "Prometheus scrapes: $*"
  else
    [ -z "${tmp:-}" ] || rm -f "$tmp"
    note "WARNING: could not rewrite $targets_file; ServerDown may fire for a stopped color"
  fi
}

# --- /metrics and /health ---------------------------------------------------------------------

# metric_sum NAME [LABEL_FILTER] < metrics: sum of the samples of NAME whose labels contain the filter.
metric_sum() {
  awk -v name="$1" -v filter="${2:-}" '
    /^#/ { next }
    {
      split($1, parts, "{")
      if (parts[1] != name) next
      if (filter != "" && index($1, filter) == 0) next
      sum += $NF
    }
    END { printf "%.0f\n", sum + 0 }'
}

# json_field FIELD < json: a top-level field of a JSON object, "-" when missing.
json_field() {
  jq -r --arg f "$1" '.[$f] // "-" | tostring' 2>/dev/null || echo "-"
}

# front_color: the color the front door's /health reports (what a new connection reaches).
front_color() {
  { curl -fsS --max-time 2 "$front_url/health" 2>/dev/null || echo '{}'; } | json_field color
}
