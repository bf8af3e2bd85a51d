#!/usr/bin/env bash
# The main job on the sandbox: start the provider sandbox, print what each provider holds,
# sync every provider's opt-outs to every other provider (tap-optouts | target-optouts),
# print the holdings again and the ledger's report; then the same sync again on the same
# sandbox data (zero write requests: the ledger knows what each provider holds); stop the
# sandbox.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.tools/meltano/bin:$PATH"
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
meltano install >/dev/null 2>&1 || meltano install
mkdir -p output
# The sandbox is started here so that its data lasts for both syncs (each `meltano run sync`
# keeps a sandbox that was already running): the second sync finds nothing new anywhere, and
# the ledger lets it write nothing.
export OPTOUTS_SANDBOX_DIR="$PWD/.sandbox"
# A new sandbox holds newly seeded data: the first sync reads it all (the bookmarks of an
# earlier main job would skip it).
meltano state clear --force sandbox:tap-optouts-to-target-optouts >/dev/null 2>&1 || true
meltano invoke optouts-sandbox start 2>&1 | grep -E "optouts-sandbox (started|already)" || true
trap 'meltano invoke optouts-sandbox stop --force >/dev/null 2>&1 || true' EXIT
show() {
  grep -E "opt-outs held|^\S+ \[info +\] (optouts-sandbox|optouts-ledger) +  |^\S+ \[info +\] optouts-ledger +ledger |target-optouts summary: |\[error|Error|Traceback" \
    | grep -vE "optouts-sandbox +optouts-sandbox (already answers|left running)" \
    | sed -E 's/^\S+ \[\w+ *\] (optouts-sandbox|optouts-ledger|target-optouts) +//'
}
set +e
for run in first second; do
  echo "== meltano run sync: the $run sync"
  meltano run sync 2>&1 | show
  status=${PIPESTATUS[0]}
  [ "$status" = 0 ] || exit "$status"
done
set -e
