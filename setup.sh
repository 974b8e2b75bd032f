#!/usr/bin/env bash
# Create .venv and install multvae with its dependencies.
# Every dependency but torch comes from requirements.lock, pinned by version and hash (the
# environment that produced the committed results); MULTVAE_UNLOCKED=1 resolves pyproject.toml's
# ranges instead (another Python or platform). torch: a CPU build is installed only when the
# environment has no torch yet; an existing torch (a CUDA build on a GPU machine, say) is kept.
# Override with TORCH_SPEC, e.g.
#   TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124" ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch (${TORCH_SPEC:-CPU build})"
  if [ -n "${TORCH_SPEC:-}" ]; then
    # shellcheck disable=SC2086
    python -m pip install -q $TORCH_SPEC
  else
    # The CPU wheel where an index or --find-links has it; else PyTorch's CPU index alone. Other
    # indexes from pip's configuration are dropped for that step, as they can hold a CUDA build
    # of several GB that pip would prefer.
    if ! python -m pip install -q "torch==2.13.0+cpu"; then
      echo "setup: torch 2.13.0+cpu not on the configured indexes; trying PyTorch's CPU index"
      env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
        python -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
fi
if [ -n "${MULTVAE_UNLOCKED:-}" ]; then
  python -m pip install -q -e ".[dev]"
else
  python -m pip install -q --require-hashes --no-deps -r requirements.lock
  python -m pip install -q --no-deps --no-build-isolation -e .
  python -m pip check >/dev/null || { python -m pip check; exit 1; }
fi
echo "setup: done ($(python -c 'import torch; print("torch", torch.__version__)'))"
