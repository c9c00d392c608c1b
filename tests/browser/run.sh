#!/usr/bin/env bash
# The browser tests: the web app (issue 14, walkthrough.py) and the
# browser extension with its native host (issue 15, extension.py).
# Playwright (Python) driving
# Debian's chromium against real cofferd daemons on loopback (temp dirs,
# --no-mdns, web apps on free ports). Installs what it needs: chromium
# (apt, as root) and a venv under target/ with playwright (pip); the
# Playwright browser download is never used.
#
#   bash tests/browser/run.sh                 # the walkthrough and checks
#   COFFER_BROWSER_ITEMS=10000 bash tests/browser/run.sh --perf-only   # both perf runs
#   COFFER_SCREENSHOTS=docs bash tests/browser/run.sh   # refresh docs/screenshots/
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser: installing chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
  else
    echo "browser: chromium is not installed and cannot be installed here" >&2
    exit 1
  fi
fi

venv="$target/browser-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import playwright, axe_playwright_python" 2>/dev/null; then
  echo "browser: creating $venv with playwright and axe-core"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q playwright axe-playwright-python
fi

cargo build -q -p coffer-daemon -p coffer-cli -p coffer-browser-host
export COFFER_BIN_DIR="$target/debug"
"$venv/bin/python" "$root/tests/browser/walkthrough.py" "$@"
exec "$venv/bin/python" "$root/tests/browser/extension.py" "$@"
