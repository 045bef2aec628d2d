#!/usr/bin/env bash
# Screenshots of the pages people look at, taken with headless Chromium (installed if missing).
# Usage: scripts/screenshot.sh [base-url] [out-dir]   (default http://127.0.0.1:8080, ./screenshots)
set -euo pipefail
base="${1:-http://127.0.0.1:8080}"
out="${2:-screenshots}"
if ! command -v chromium >/dev/null 2>&1 || ! fc-list | grep -qi "CJK"; then
  apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk
fi
mkdir -p "$out"
profile="$(mktemp -d)"
shot() {
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --disable-sync --no-first-run --user-data-dir="$profile" --hide-scrollbars --window-size=1280,900 \
    --virtual-time-budget=3000 --screenshot="$out/$2.png" "$base$1" >/dev/null 2>&1
  echo "$out/$2.png"
}
shot / landing
shot /docs docs
rm -rf "$profile"
