"""The reference: a plain orjson writer and reader of the same records the connectors move.

    python benchmarks/reference.py write RECORDED   RECORD lines of those records to /dev/null
    python benchmarks/reference.py read RECORDED    parse every line of the recorded file

RECORDED is a tap's output (Singer messages, one per line). The writer loads the records (it
decodes them, as a tap decodes a provider's answers), then writes each as a RECORD message
line, as a tap writes them; the reader reads and parses the file line by line, as a target
reads its input. Prints `{"records": n, "seconds": s}`: the loop alone (writing, or reading),
timed inside. bench.py times the whole process too (start to exit, as it times the
connectors), and that is the reference the budget's ratios compare with: the "raw orjson"
figures the budget was set from (270k records/s written, 625k read) are whole processes.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson


def load_records(path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    with open(path, "rb") as handle:
        for line in handle:
            message = orjson.loads(line)
            if message.get("type") == "RECORD":
                out.append((message["stream"], message["record"]))
    return out


def write(path: str) -> dict[str, float]:
    records = load_records(path)
    started = time.perf_counter()
    with open("/dev/null", "wb") as out:
        for stream, record in records:
            message = {
                "type": "RECORD",
                "stream": stream,
                "record": record,
                "time_extracted": datetime.now(UTC),
            }
            out.write(orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE))
    return {"records": len(records), "seconds": time.perf_counter() - started}


def read(path: str) -> dict[str, float]:
    started = time.perf_counter()
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            message = orjson.loads(line)
            if message.get("type") == "RECORD":
                count += 1
    return {"records": count, "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    mode, recorded = sys.argv[1], sys.argv[2]
    print(json.dumps(write(recorded) if mode == "write" else read(recorded)))
