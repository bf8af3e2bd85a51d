#!/usr/bin/env bash
# The quick, unit-level part of the suite on the newest Python the project supports that the
# machine has (3.11, the oldest, runs the whole suite: scripts/test.sh); other versions as
# arguments (`bash scripts/test_pythons.sh 3.12 3.13`). Each in its own environment,
# .venv-<version>, installed from uv.lock like .venv. The interpreters are pyenv's, which this
# machine kind provides (uv cannot download interpreters here); one that is missing is skipped
# with a message. 3.14: no interpreter is on the machine, and none comes from the registries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.local/bin:$PATH"
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(3.13)
# About 45 s on the 2-core CI machine kind: the packages build, both CLIs run (metrics, JSON
# logs, settings), each provider's client against the sandbox.
QUICK=(
  tests/test_packaging.py
  tests/test_target_normalize.py
  tests/test_checkmarket.py
  tests/test_optizmo.py
  tests/test_meltano_conventions.py
)
status=0
for version in "${VERSIONS[@]}"; do
  python=$(compgen -G "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version.*/bin/python$version" | sort -V | tail -n 1 || true)
  if [ -z "$python" ]; then
    echo "test_pythons: Python $version is not on this machine (pyenv): skipped" >&2
    continue
  fi
  echo "test_pythons: $("$python" --version) (quick subset)" >&2
  UV_PROJECT_ENVIRONMENT=".venv-$version" uv sync --quiet --locked --python "$python"
  ".venv-$version/bin/python" -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "${QUICK[@]}" || status=1
done
exit "$status"
