"""What the ledger shows people: one address's trail, and the report per destination (text, JSON,
and a self-contained HTML page with the coverage and latency charts)."""

from __future__ import annotations

import html
import json
import statistics
from datetime import UTC, datetime
from typing import Any

from optouts_providers.timeutil import parse_timestamp
from target_optouts.ledger.inbox import webhook_summary, webhook_text
from target_optouts.ledger.store import Destination, Ledger, unpack_ids

HOW = {
    "seen": "seen in its own stream",
    "written": "written by target-optouts",
    "already": "answered already present",
    "rejected": "refused by the provider",
    "missing": "missing from the provider's full read (reconcile)",
}


def when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def origin_epoch(text: str | None, first_seen: float) -> float:
    if text:
        try:
            return parse_timestamp(text).timestamp()
        except (ValueError, TypeError):
            pass
    return first_seen


# -- trail ---------------------------------------------------------------------------------
def trail(ledger: Ledger, kind: str, value: str) -> dict[str, Any]:
    """Where and when one normalised address opted out, and per destination how it stands."""
    hi, lo = ledger.keys.of(kind, value)
    row = ledger.address(hi, lo)
    out: dict[str, Any] = {"address": value, "kind": kind, "known": row is not None}
    if row is None:
        return out
    names = {d.id: d for d in ledger.destinations()}
    origin = names.get(row.origin_destination) if row.origin_destination else None
    out["origin"] = {
        "stream": row.origin_stream,
        "destination": origin.name if origin else None,
        "opted_out_at": row.opted_out_at,
        "first_seen_at": when(row.first_seen_at),
    }
    events = ledger.evidence_of(hi)
    per: dict[str, Any] = {}
    for dest in names.values():
        state = _state(dest, kind, row.present, row.pending, row.rejected)
        history = [
            {
                "how": e.how,
                "meaning": HOW.get(e.how, e.how),
                "at": when(e.at),
                "run": e.run_id,
                "answer": json.loads(e.answer) if e.answer else None,
            }
            for e in events
            if e.destination_id == dest.id
        ]
        since = next((h["at"] for h in history if h["how"] in ("seen", "written", "already")), None)
        if state == "cannot carry" and not history:
            continue
        per[dest.name] = {"state": state, "since": since if state == "held" else None}
        per[dest.name]["history"] = history
    out["destinations"] = per
    return out


def _state(dest: Destination, kind: str, present: int, pending: int, rejected: int) -> str:
    if present & dest.bit:
        return "held"
    if kind not in dest.kinds.split(","):
        return "cannot carry"
    if rejected & dest.bit:
        return "rejected"
    if pending & dest.bit:
        return "sent, not yet accepted"
    return "not yet written"


def trail_text(found: dict[str, Any]) -> str:
    lines = [f"{found['address']} ({found['kind']})"]
    if not found["known"]:
        lines.append("  not in the ledger: no opt-out of this address was seen")
        return "\n".join(lines)
    origin = found["origin"]
    lines.append(
        f"  opted out: {origin['destination'] or origin['stream']} (stream "
        f"{origin['stream']}) at {origin['opted_out_at'] or 'an unknown time'}; first seen "
        f"by the ledger {origin['first_seen_at']}"
    )
    width = max([len(n) for n in found["destinations"]] or [10])
    for name, info in found["destinations"].items():
        since = f" since {info['since']}" if info["since"] else ""
        lines.append(f"  {name:<{width}}  {info['state']}{since}")
        for event in info["history"]:
            answer = event["answer"] or {}
            said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(answer.items()))
            said = f"; the batch's answer: {said}" if said else ""
            lines.append(
                f"  {'':<{width}}    {event['at']} {event['meaning']} (run {event['run']}{said})"
            )
    return "\n".join(lines)


# -- report --------------------------------------------------------------------------------
def report(ledger: Ledger) -> dict[str, Any]:
    destinations = ledger.destinations()
    counts = ledger.mask_counts()
    total = sum(c for *_rest, c in counts)
    kinds: dict[str, int] = {}
    for kind, *_masks, count in counts:
        kinds[kind] = kinds.get(kind, 0) + count
    latencies = _latencies(ledger)
    drift = _drift(ledger)
    rows = []
    for dest in destinations:
        held = carry = rejected = pending = 0
        for kind, present, pend, rej, count in counts:
            if present & dest.bit:
                held += count
            elif kind not in dest.kinds.split(","):
                carry += count
            elif rej & dest.bit:
                rejected += count
            elif pend & dest.bit:
                pending += count
        lacks = total - held
        lat = latencies.get(dest.id) or []
        rows.append(
            {
                "destination": dest.name,
                "kinds": dest.kinds.split(",") if dest.kinds else [],
                "written_here": bool(dest.kinds),
                "holds": held,
                "lacks": lacks,
                "lacks_why": {
                    "cannot_carry": carry,
                    "rejected": rejected,
                    "sent_not_accepted": pending,
                    "not_yet_written": lacks - carry - rejected - pending,
                },
                "latency_seconds": _summary(lat),
                "drift": drift.get(dest.id, {"missing_found": 0, "repaired": 0}),
            }
        )
    runs = ledger.runs()
    return {
        "ledger": ledger.where,
        "generated_at": when(datetime.now(UTC).timestamp()),
        "optouts": total,
        "by_kind": kinds,
        "runs": len(runs),
        "last_run": {
            "id": runs[-1].id,
            "kind": runs[-1].kind,
            "status": runs[-1].status,
            "started_at": when(runs[-1].started_at),
        }
        if runs
        else None,
        "destinations": rows,
        "latency_histogram": _histogram(latencies),
        "webhooks": webhook_summary(ledger),
    }


def _latencies(ledger: Ledger) -> dict[int, list[float]]:
    """Per destination: origin time to the first written time, per address written."""
    first: dict[int, dict[int, float]] = {}
    for row in ledger.evidence_rows("written"):
        seen = first.setdefault(row.destination_id, {})
        for hi in unpack_ids(row.ids):
            if hi not in seen:
                seen[hi] = row.at
    out: dict[int, list[float]] = {}
    for dest_id, written in first.items():
        origins = ledger.origin_times(list(written))
        out[dest_id] = [
            max(0.0, at - origin_epoch(*origins[hi])) for hi, at in written.items() if hi in origins
        ]
    return out


def _drift(ledger: Ledger) -> dict[int, dict[str, int]]:
    """Per destination: addresses a reconcile found missing, and how many of them were written
    back after that (evidence rows in the order they were recorded)."""
    out: dict[int, dict[str, int]] = {}
    open_gaps: dict[int, set[int]] = {}
    for row in ledger.evidence_rows():
        if row.how == "missing":
            ids = set(unpack_ids(row.ids))
            open_gaps.setdefault(row.destination_id, set()).update(ids)
            entry = out.setdefault(row.destination_id, {"missing_found": 0, "repaired": 0})
            entry["missing_found"] += len(ids)
        elif row.how == "written" and open_gaps.get(row.destination_id):
            gaps = open_gaps[row.destination_id]
            repaired = gaps.intersection(unpack_ids(row.ids))
            gaps -= repaired
            out[row.destination_id]["repaired"] += len(repaired)
    return out


def _summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "median": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "count": len(ordered),
        "median": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


BUCKETS = (1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400)
BUCKET_NAMES = ("<1s", "<10s", "<1min", "<10min", "<1h", "<6h", "<1d", "<7d", ">=7d")


def _histogram(latencies: dict[int, list[float]]) -> dict[str, int]:
    counts = dict.fromkeys(BUCKET_NAMES, 0)
    for values in latencies.values():
        for value in values:
            index = next((i for i, top in enumerate(BUCKETS) if value < top), len(BUCKETS))
            counts[BUCKET_NAMES[index]] += 1
    return counts


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}min"
    if value < 172800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"


def report_text(data: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(data["by_kind"].items()))
    last = data["last_run"]
    lines = [
        f"ledger {data['ledger']}: {data['optouts']} opt-outs known ({kinds or 'none'}); "
        f"{data['runs']} runs"
        + (f", the last {last['kind']} {last['status']} at {last['started_at']}" if last else "")
    ]
    header = (
        "destination",
        "holds",
        "lacks",
        "cannot carry",
        "rejected",
        "in flight",
        "not yet written",
        "latency median/p95/max",
    )
    table = [header]
    for row in data["destinations"]:
        why = row["lacks_why"]
        lat = row["latency_seconds"]
        name = row["destination"] + ("" if row["written_here"] else " (read only)")
        table.append(
            (
                name,
                str(row["holds"]),
                str(row["lacks"]),
                str(why["cannot_carry"]),
                str(why["rejected"]),
                str(why["sent_not_accepted"]),
                str(why["not_yet_written"]),
                f"{_seconds(lat['median'])}/{_seconds(lat['p95'])}/{_seconds(lat['max'])}"
                if lat["count"]
                else "-",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for index, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
        if index == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    drifted = [r for r in data["destinations"] if r["drift"]["missing_found"]]
    for row in drifted:
        lines.append(
            f"  drift: {row['destination']} no longer held {row['drift']['missing_found']} "
            f"(found by a reconcile); {row['drift']['repaired']} written back since"
        )
    if data.get("webhooks"):
        lines += webhook_text(data["webhooks"])
    return "\n".join(lines)


def report_html(data: dict[str, Any]) -> str:
    """One self-contained page: coverage bars per destination, the latency histogram."""
    colours = {
        "holds": "#2e7d32",
        "cannot_carry": "#9e9e9e",
        "rejected": "#c62828",
        "sent_not_accepted": "#f9a825",
        "not_yet_written": "#ef6c00",
    }
    labels = {
        "holds": "holds",
        "cannot_carry": "cannot carry",
        "rejected": "rejected",
        "sent_not_accepted": "in flight",
        "not_yet_written": "not yet written",
    }
    total = max(1, data["optouts"])
    bar_w, row_h = 560, 28
    rows = data["destinations"]
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{bar_w + 260}" '
        f'height="{row_h * len(rows) + 40}" role="img" aria-label="coverage per destination">'
    ]
    for index, row in enumerate(rows):
        y = 10 + index * row_h
        svg.append(
            f'<text x="0" y="{y + 17}" font-size="13">{html.escape(row["destination"])}</text>'
        )
        x = 200.0
        parts = [("holds", row["holds"]), *list(row["lacks_why"].items())]
        for key, count in parts:
            width = bar_w * count / total
            if width <= 0:
                continue
            svg.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{row_h - 6}" '
                f'fill="{colours[key]}"><title>{labels[key]}: {count}</title></rect>'
            )
            x += width
        share = 100 * row["holds"] / total
        svg.append(f'<text x="{200 + bar_w + 8}" y="{y + 17}" font-size="12">{share:.1f}%</text>')
    svg.append("</svg>")
    hist = data["latency_histogram"]
    top = max(hist.values() or [1]) or 1
    hsvg = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="620" height="220" role="img" '
        'aria-label="propagation latency">'
    ]
    for index, (name, count) in enumerate(hist.items()):
        height = 160 * count / top
        x = 20 + index * 64
        hsvg.append(
            f'<rect x="{x}" y="{180 - height:.1f}" width="48" height="{height:.1f}" '
            f'fill="#1565c0"><title>{name}: {count}</title></rect>'
            f'<text x="{x + 24}" y="198" font-size="12" text-anchor="middle">{name}</text>'
            f'<text x="{x + 24}" y="{175 - height:.1f}" font-size="11" '
            f'text-anchor="middle">{count}</text>'
        )
    hsvg.append("</svg>")
    legend = " ".join(
        f'<span style="display:inline-block;width:12px;height:12px;background:{c}"></span> '
        f"{labels[k]}"
        for k, c in colours.items()
    )
    table = html.escape(report_text(data))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Opt-out ledger report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
pre{{background:#f5f5f5;padding:1em;overflow-x:auto}}</style></head>
<body><h1>Opt-out ledger report</h1>
<p>{data["optouts"]} opt-outs known; generated {data["generated_at"]};
{html.escape(data["ledger"])}</p>
<h2>Coverage per destination</h2><p>{legend}</p>{"".join(svg)}
<h2>Propagation latency (origin time to written)</h2>{"".join(hsvg)}
<h2>The figures</h2><pre>{table}</pre>
</body></html>
"""
