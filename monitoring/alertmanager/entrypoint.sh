#!/bin/sh
# Starts Alertmanager with the webhook URLs of the environment written into a copy of its config.
#
# Alertmanager 0.25 reads a webhook's URL only from the config file (no url_file), and the URL of a
# webhook is usually its secret. So alertmanager.yml holds placeholder URLs and this script, the
# container's entrypoint, replaces them:
#   ALERT_PAGE_WEBHOOK_URL   receives critical alerts (receiver "page")
#   ALERT_TEAM_WEBHOOK_URL   receives warnings (receiver "team"); defaults to the page URL
# With neither set, the placeholders stay: Alertmanager runs, shows alerts on its UI and counts the
# failed deliveries in alertmanager_notifications_failed_total.
# A changed URL needs a restart (`docker compose restart alertmanager`); a reload rereads the copy.
# POSIX sh: the Alertmanager image has busybox, not bash.
set -eu

template=${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}
config=${ALERTMANAGER_CONFIG:-/alertmanager/alertmanager.yml}
binary=${ALERTMANAGER_BIN:-/bin/alertmanager}

page=${ALERT_PAGE_WEBHOOK_URL:-}
team=${ALERT_TEAM_WEBHOOK_URL:-$page}

for url in "$page" "$team"; do
  case $url in
    "") ;;
    *[[:space:]\"\'\\]*) echo "entrypoint: a webhook URL must not contain spaces, quotes or backslashes" >&2; exit 2 ;;
    http://?* | https://?*) ;;
    *) echo "entrypoint: a webhook URL must start with http:// or https://" >&2; exit 2 ;;
  esac
done
[ -n "$page" ] || echo "entrypoint: ALERT_PAGE_WEBHOOK_URL is not set; notifications will fail until it is" >&2

# Literal replacement (index/substr, not sub()): a URL's & or \ must not act as regex syntax.
PAGE=$page TEAM=$team awk '
  function swap(line, from, to,   i) {
    if (to == "" || (i = index(line, from)) == 0) return line
    return substr(line, 1, i - 1) to substr(line, i + length(from))
  }
  {
    line = swap($0, "http://page-webhook.invalid/alertmanager", ENVIRON["PAGE"])
    print swap(line, "http://team-webhook.invalid/alertmanager", ENVIRON["TEAM"])
  }
' "$template" >"$config.tmp"
mv "$config.tmp" "$config"

exec "$binary" --config.file="$config" "$@"
