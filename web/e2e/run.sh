#!/usr/bin/env bash
# Runs the browser suite: a fresh small demo town served by the debug build, then Playwright with
# Debian's Chromium, then an outside Open311 client (all of it when no test is named). Screenshots go to
# $CIVICGRID_SCREENSHOTS (docs/screenshots when updating them).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(cd .. && pwd)"
bin="${CIVICGRID_BIN:-$root/target/debug/civicgrid}"
port="${CIVICGRID_E2E_PORT:-8099}"
work="$(mktemp -d)"
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
[ -x "$bin" ] || (cd "$root" && cargo build --locked)
command -v /usr/bin/chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
[ -d node_modules/@playwright/test ] || npm ci --no-audit --no-fund
# Another server on the port would be tested in place of the fresh demo town, and fail in odd ways.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "port $port is taken: stop what listens there or set CIVICGRID_E2E_PORT" >&2
  exit 1
fi
export CIVICGRID_ADMIN_PASSWORD="${CIVICGRID_ADMIN_PASSWORD:-e2e-admin-$RANDOM$RANDOM}"
"$bin" demo --database "$work/e2e.db" --scale 0.05 --case-scale 0 --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/server.log"; exit 1; }
export CIVICGRID_E2E_URL="http://127.0.0.1:$port"
export CIVICGRID_SCREENSHOTS="${CIVICGRID_SCREENSHOTS:-$work/screenshots}"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npx playwright test "$@"
# An Open311 client someone else wrote (georeport, from PyPI), in a virtual environment of its own.
if [ $# -eq 0 ]; then
  python3 -m venv "$work/py"
  "$work/py/bin/pip" install --quiet --disable-pip-version-check georeport==0.3.1
  "$work/py/bin/python" e2e/open311-client.py
fi
