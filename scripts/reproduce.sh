#!/usr/bin/env bash
# Set up (if needed) and run the main job: quick reproductions of every experiment, one HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/iclab reproduce --quick "$@"
