#!/usr/bin/env bash
# Set up (if needed) and run the test suite. CI=true skips the paper-scale tests marked `slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
