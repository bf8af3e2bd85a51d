"""How long target-optouts takes over one long input line, and the memory it takes.

Each run is one `target-optouts` process (dry run: nothing is sent) reading a file of three
lines on stdin: a SCHEMA, one RECORD whose `note` field makes the line SIZE MB long, and a
STATE. Printed per size: the wall time of each run (start to exit) and the peak RSS
(`wait4`'s `ru_maxrss`). With `--max-line-bytes` above the sizes, the line is read and decoded
(the reading cost); with the default cap, it is refused (the cost of refusing it).

    .venv/bin/python benchmarks/long_lines.py --sizes 25 50 100 --runs 3
    .venv/bin/python benchmarks/long_lines.py --sizes 25 50 100 --max-line-bytes 200000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = Path(sys.executable).with_name("target-optouts")
MB = 1 << 20


def write_input(path: Path, size_mb: int) -> None:
    schema = {
        "type": "SCHEMA",
        "stream": "crm",
        "schema": {"properties": {"email": {"type": "string"}, "note": {"type": "string"}}},
        "key_properties": [],
    }
    head = b'{"type": "RECORD", "stream": "crm", "record": {"email": "a@example.com", "note": "'
    tail = b'"}}\n'
    with path.open("wb") as out:
        out.write(json.dumps(schema).encode() + b"\n")
        out.write(head)
        left = size_mb * MB - len(head) - len(tail)
        block = b"x" * MB
        while left > 0:
            out.write(block[: min(left, MB)])
            left -= MB
        out.write(tail)
        out.write(b'{"type": "STATE", "value": {"done": true}}\n')


def run_once(config: Path, data: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and exit status of one target process (its last stderr
    line printed when it fails)."""
    with data.open("rb") as stdin, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(
            [str(TARGET), "--config", str(config)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            stderr.seek(0)
            lines = stderr.read().decode("utf-8", "replace").strip().splitlines() or [""]
            print(f"  exit {code}: {lines[-1][:300]}", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100], help="MB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-line-bytes", type=int, default=None)
    args = parser.parse_args()
    config: dict[str, object] = {
        "dry_run": True,
        "checkmarket": {"base_url": "http://127.0.0.1:9", "master_key": "m", "key": "k"},
    }
    if args.max_line_bytes is not None:
        config["max_line_bytes"] = args.max_line_bytes
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "config.json"
        config_path.write_text(json.dumps(config))
        print("| line MB | runs (s) | median s | peak RSS MB | exit |")
        print("|---|---|---|---|---|")
        for size in args.sizes:
            data = Path(folder) / f"line-{size}.jsonl"
            write_input(data, size)
            results = [run_once(config_path, data) for _ in range(args.runs)]
            data.unlink()
            walls = [wall for wall, _, _ in results]
            runs = ", ".join(f"{wall:.2f}" for wall in walls)
            rss = max(peak for _, peak, _ in results)
            codes = sorted({code for _, _, code in results})
            print(
                f"| {size} | {runs} | {statistics.median(walls):.2f} | {rss:.0f} | {codes} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
