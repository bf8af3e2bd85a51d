#!/usr/bin/env bash
# Set up everything on a fresh machine: uv, the project venv (.venv) and Meltano (.tools/meltano).
# Idempotent and quick when already done. Source it or run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MELTANO_VERSION="4.4.1"

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi

if [ ! -x .venv/bin/python ]; then
  uv venv --quiet --python 3.11 .venv 2>/dev/null || uv venv --quiet .venv
fi
uv pip install --quiet -p .venv/bin/python -e '.[dev]'

if [ ! -x .tools/meltano/bin/meltano ] || ! .tools/meltano/bin/meltano --version 2>/dev/null | grep -q "$MELTANO_VERSION"; then
  uv venv --quiet --python 3.11 .tools/meltano 2>/dev/null || uv venv --quiet .tools/meltano
  uv pip install --quiet -p .tools/meltano/bin/python "meltano==$MELTANO_VERSION"
fi
