#!/usr/bin/env bash
# Set up everything on a fresh machine: uv, the project venv (.venv), Meltano (.tools/meltano)
# and, as root on Debian, the packages the tests and the README need (apt-get). Idempotent and
# quick when already done. Source it or run it.
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
# Exactly what uv.lock pins: every distribution under packages/ (editable) and the dev tools.
# --locked fails on a uv.lock that no longer matches the pyproject.toml files, rather than
# resolving anew, so a fresh machine gets the versions CI tested.
uv sync --quiet --locked

# The sandbox's port for meltano.yml's sandbox environment, in .env (Meltano reads it below the
# shell's environment, so `OPTOUTS_SANDBOX_PORT=9000 meltano run sync` still moves it): Meltano
# has no default value for a variable, and a value in meltano.yml would win over the shell's.
if ! grep -qs '^OPTOUTS_SANDBOX_PORT=' .env; then
  [ -e .env ] || (umask 077 && : >.env)
  if [ -s .env ] && [ -n "$(tail -c 1 .env)" ]; then echo >>.env; fi
  echo 'OPTOUTS_SANDBOX_PORT=8765' >>.env
fi

# The installed version, read from its metadata (`meltano --version` takes seconds to start).
if [ ! -x .tools/meltano/bin/meltano ] || ! compgen -G ".tools/meltano/lib/python3*/site-packages/meltano-$MELTANO_VERSION.dist-info" >/dev/null; then
  uv venv --quiet --python 3.11 .tools/meltano 2>/dev/null || uv venv --quiet .tools/meltano
  uv pip install --quiet -p .tools/meltano/bin/python "meltano==$MELTANO_VERSION"
fi

# Debian packages: PostgreSQL's server for tests/test_ecosystem_postgres.py and the README's
# warehouse commands; curl for the README's sandbox commands.
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: not installed: ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
  fi
fi
