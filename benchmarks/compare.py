"""The before/after table of a `bench.py --baseline` run, as Markdown (what RESULTS.md keeps).

.venv/bin/python benchmarks/compare.py benchmarks/results/<run>/results.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench import budget_table


def cell(s: dict[str, Any]) -> str:
    return (
        f"{s['wall_median']:.2f} s ({s['wall_min']:.2f}-{s['wall_max']:.2f}); "
        f"{s['records_per_second_median']:,.0f}/s "
        f"({s['records_per_second_min']:,.0f}-{s['records_per_second_max']:,.0f}); "
        f"x{s['ratio_median']:.3f} ({s['ratio_min']:.3f}-{s['ratio_max']:.3f})"
        + (f"; loop x{s['loop_ratio_median']:.3f}" if "loop_ratio_median" in s else "")
    )


def rss(s: dict[str, Any]) -> str:
    return ", ".join(f"{role} {mb:.0f}" for role, mb in s["peak_rss_mb"].items())


def table(report: dict[str, Any]) -> str:
    summary = report["summary"]
    lines = [
        "| figure | records | before: wall median (min-max); records/s; ratio to the reference "
        "(whole process; loop: to its loop alone) "
        "| after: the same | speed-up (median wall) | requests before / after (budget) "
        "| peak RSS MB before / after |",
        "|" + "---|" * 7,
    ]
    for name, after in summary.items():
        if name.endswith("(before)"):
            continue
        before = summary.get(f"{name} (before)")
        if before is None:
            lines.append(
                f"| {name} | {after['records']:,} | - | {cell(after)} | - "
                f"| - / {after['requests_median']:,.0f} ({after['requests_expected']}) "
                f"| - / {rss(after)} |"
            )
            continue
        speedup = before["wall_median"] / after["wall_median"]
        lines.append(
            f"| {name} | {after['records']:,} | {cell(before)} | {cell(after)} | x{speedup:.1f} "
            f"| {before['requests_median']:,.0f} / {after['requests_median']:,.0f} "
            f"({after['requests_expected']}) | {rss(before)} / {rss(after)} |"
        )
    if report.get("budget"):
        rows = [(b["budget"], b["measured"], b["met"]) for b in report["budget"]]
        lines += ["", budget_table(rows)]
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        print(table(json.load(handle)))
