"""Work around a Meltano 4.4.1 bug in the project's own Meltano (.tools/meltano).

`meltano config test <loader>` always fails: LoaderTestService waits for the loader to exit,
then calls `process.terminate()` on it in a `finally`, which raises ProcessLookupError for a
process that has exited (reproduced with target-jsonl and target-optouts; every loader that
finishes). The patch terminates only a loader that is still running. Idempotent; it does
nothing when the code it fixes is not there (another Meltano version).

    .tools/meltano/bin/python scripts/patch_meltano.py
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

BROKEN = """        finally:
            process.terminate()
            await process.wait()
"""
FIXED = """        finally:
            if process.returncode is None:  # patched by scripts/patch_meltano.py
                process.terminate()
            await process.wait()
"""


def main() -> int:
    path = Path(sysconfig.get_paths()["purelib"]) / "meltano/core/plugin_test_service.py"
    if not path.exists():
        print(f"{path} not found: run this with Meltano's Python (.tools/meltano/bin/python)")
        return 1
    source = path.read_text()
    if FIXED in source:
        return 0
    if source.count(BROKEN) != 1:
        print(f"{path}: the loader-test code differs from Meltano 4.4.1's; not patched")
        return 0
    path.write_text(source.replace(BROKEN, FIXED))
    for cached in path.parent.glob(f"__pycache__/{path.stem}.*.pyc"):
        cached.unlink()
    print(f"patched {path} (meltano config test <loader>)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
