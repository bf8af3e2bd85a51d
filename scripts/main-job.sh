#!/usr/bin/env bash
# The main job on the sandbox: start the provider sandbox, print what each provider holds,
# sync every provider's opt-outs to every other provider (tap-optouts | target-optouts),
# print the holdings again, stop the sandbox.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.tools/meltano/bin:$PATH"
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
meltano install >/dev/null 2>&1 || meltano install
mkdir -p output
set +e
meltano run sync 2>&1 | grep -E "opt-outs held|^\S+ \[info +\] optouts-sandbox +  |target-optouts summary: |\[error|Error|Traceback" \
  | sed -E 's/^\S+ \[\w+ *\] (optouts-sandbox|target-optouts) +//'
status=${PIPESTATUS[0]}
set -e
exit "$status"
