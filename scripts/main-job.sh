#!/usr/bin/env bash
# The main job on the sandbox: start the provider sandbox, run the Meltano job, stop it.
# Output: JSON-lines files under output/, and what each provider held before and after.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.tools/meltano/bin:$PATH"
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
meltano install >/dev/null
mkdir -p output
meltano run sandbox-to-jsonl
echo
echo "Records written to output/:"
for f in output/*.jsonl; do
  [ -e "$f" ] && printf '  %-32s %8d\n' "$(basename "$f")" "$(wc -l <"$f")"
done
