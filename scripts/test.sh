#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Paper-scale tests marked `slow` run only with `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The report-site test (tests/runtime/test_site.py) drives headless Chromium, and fails without it when
# CI=true: install Debian's chromium and chromium-driver if missing and we can (root, apt-get), quietly.
if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing chromium and chromium-driver (for the report-site test)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } \
    || echo "could not install chromium; tests/runtime/test_site.py will skip (or fail under CI=true)" >&2
fi
exec .venv/bin/python -m pytest "$@"
