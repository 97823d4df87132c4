#!/usr/bin/env bash
# Set up (if needed) and run the main job: quick reproductions of every experiment, then the report site (runs/site/index.html).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/iclab reproduce --quick "$@"
