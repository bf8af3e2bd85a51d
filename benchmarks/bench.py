"""The benchmark: speed, requests and memory of the connectors, against an orjson reference.

    .venv/bin/python benchmarks/bench.py [--size 200000] [--big 1000000] [--rounds 5]

See benchmarks/README.md. Each round runs every figure once (interleaved rounds), and for each
figure the reference (a plain orjson writer or reader of the same records) right after it.
Prints a table (median, min-max, ratio to the reference) and writes every measurement as JSON
under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procs
import scenarios as sc

RESULTS = Path(__file__).resolve().parent / "results"
# The page cap of each tap source's listing (the sandbox's, the tap's page size).
PAGE_CAPS = {"checkmarket": 1000, "slicktext": 10_000, "slicktext-v2": 10_000}
FIGURES = (
    "tap:checkmarket",
    "tap:slicktext",
    "tap:slicktext-v2",
    "tap:optizmo",
    "target:checkmarket",
    "target:optizmo",
    "target:slicktext",
    "target:slicktext-v2",
    "pipe",
    "meltano",
    "meltano+ledger",
    "meltano+ledger:again",
)


@dataclass
class Version:
    """The connectors measured: the working tree, or an older checkout (`--baseline`)."""

    label: str
    env: dict[str, str]
    batch: bool  # meltano: BATCH messages (batch_config)


@dataclass
class Figure:
    name: str
    records: int
    run: Callable[[Version], procs.Measured]
    reference: tuple[str, Path]  # ("write" | "read", recorded file)
    sandbox: sc.SandboxProcess
    expected: str  # the request budget, in words
    reset: bool = False  # reseed the sandbox first (the figure writes)
    version: Version | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        label = self.version.label if self.version else ""
        return f"{self.name} ({label})" if label else self.name


def child_env(connectors_path: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # Bytecode caches as a real deployment has them (the tools' environment turns them off).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    if connectors_path:
        env["PYTHONPATH"] = connectors_path
    return env


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def cli(name: str, config: Path, *extra: str) -> list[str]:
    return [str(sc.VENV_BIN / name), "--config", str(config), *extra]


def record(command: list[str], env: dict[str, str], out: Path, limit: int | None = None) -> int:
    """Run a tap into a file (its recorded output); keep at most `limit` RECORD lines."""
    with out.open("wb") as handle:
        measured = procs.run(command, env=env, stdout=handle)
    if not measured.ok:
        raise RuntimeError(f"recording {out.name} failed:\n{measured.stderr[-3000:]}")
    if limit is not None:
        kept, lines = 0, []
        with out.open("rb") as handle:
            for line in handle:
                if b'"type":"RECORD"' in line.replace(b" ", b""):
                    if kept == limit:
                        continue
                    kept += 1
                lines.append(line)
        out.write_bytes(b"".join(lines))
    with out.open("rb") as handle:
        return sum(1 for line in handle if b'"RECORD"' in line)


def reference(mode: str, recorded: Path, env: dict[str, str]) -> dict[str, float]:
    """The reference run as a whole process, timed as the connectors are (start to exit:
    `wall`), with the time of its loop alone (`seconds`, timed inside)."""
    script = Path(__file__).resolve().parent / "reference.py"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), mode, str(recorded)],
        env=env,
        capture_output=True,
        check=True,
    )
    wall = time.perf_counter() - started
    return {**json.loads(done.stdout), "wall": wall}


def build(args: argparse.Namespace, work: Path, env: dict[str, str]) -> list[Figure]:
    """Start the sandboxes the chosen figures need, record the inputs (with `env`), define
    the figures (each runs any version)."""
    wanted = [f for f in FIGURES if f in args.figures]
    need = {f.split(":")[0] for f in wanted}
    figures: list[Figure] = []
    sandboxes: dict[str, sc.SandboxProcess] = {}

    def sandbox(name: str, size: int, only: str) -> sc.SandboxProcess:
        if name not in sandboxes:
            box = sandboxes[name] = sc.SandboxProcess(name, size, only, work)
            print(f"starting sandbox {name} ({size:,} opt-outs, {only})", flush=True)
            print(f"  seeded in {box.start():.1f}s", flush=True)
        return sandboxes[name]

    def reader() -> sc.SandboxProcess:
        return sandbox("read", args.size, "checkmarket,slicktext,optizmo")

    write = sandbox("write", args.size, "optizmo") if need & {"target", "pipe"} else None
    emails = work / "recorded-optizmo.jsonl"
    for source in ("checkmarket", "slicktext", "slicktext-v2", "optizmo"):
        name = f"tap:{source}"
        if name not in wanted and not (source == "optizmo" and need & {"target", "pipe"}):
            continue
        box = reader()
        config = write_json(work / f"tap-{source}.json", sc.tap_config(box, source))
        recorded = work / f"recorded-{source}.jsonl"
        count = record(cli("tap-optouts", config), env, recorded)
        print(f"recorded {name}: {count:,} records", flush=True)
        if name not in wanted:
            continue
        if source == "optizmo":
            expected = "2: prepare-download + 1 download (ready at once)"
        elif source == "slicktext-v2":
            expected = "ceil(n / 10,000) per status (unsubscribed, blocked)"
        else:
            per = PAGE_CAPS[source]
            expected = f"ceil(N / {per:,}) pages = {math.ceil(count / per):,}"
        figures.append(
            Figure(
                name,
                count,
                lambda v, c=config: procs.run(cli("tap-optouts", c), env=v.env),
                ("write", recorded),
                box,
                expected,
            )
        )
    if write is not None:
        phones = work / "recorded-phones.jsonl"
        phones_count = 0
        if {"target:slicktext", "target:slicktext-v2"} & set(wanted):
            config = write_json(work / "tap-phones.json", sc.tap_config(reader(), "slicktext"))
            phones_count = record(cli("tap-optouts", config), env, phones, args.slicktext_size)
            print(f"recorded {phones_count:,} SlickText numbers for the target:slicktext figures")
        count = sum(1 for line in emails.open("rb") if b'"RECORD"' in line)
        for destination in ("checkmarket", "optizmo", "slicktext", "slicktext-v2"):
            name = f"target:{destination}"
            if name not in wanted:
                continue
            by_phone = destination.startswith("slicktext")
            source = phones if by_phone else emails
            n = phones_count if by_phone else count
            config = write_json(
                work / f"target-{destination}.json", sc.target_config(write, [destination])
            )
            expected = {
                "checkmarket": f"ceil(N / 1,000) POSTs = {math.ceil(n / 1000):,}",
                "optizmo": "a constant: prepare-upload + PUT + status polls",
                "slicktext": f"1 POST per opt-out = {n:,}",
                "slicktext-v2": f"<= 1.01 per opt-out = {math.floor(n * 1.01):,}",
            }[destination]
            figures.append(
                Figure(
                    name,
                    n,
                    lambda v, c=config, s=source: _from_file(cli("target-optouts", c), s, v.env),
                    ("read", source),
                    write,
                    expected,
                    reset=True,
                )
            )
        if "pipe" in wanted:
            tap = write_json(work / "pipe-tap.json", sc.tap_config(write, "optizmo"))
            target = write_json(
                work / "pipe-target.json", sc.target_config(write, ["checkmarket", "optizmo"])
            )
            figures.append(
                Figure(
                    "pipe",
                    count,
                    lambda v: procs.pipe(
                        cli("tap-optouts", tap), cli("target-optouts", target), env=v.env
                    ),
                    ("write", emails),
                    write,
                    "tap 2 + CheckMarket ceil(N / 1,000) + Optizmo a constant",
                    reset=True,
                )
            )
    melted = [f for f in wanted if f.startswith("meltano")]
    if melted:
        figures += meltano_figures(work, env, sandbox("big", args.big, "optizmo"), melted)
    return figures


def _from_file(command: list[str], source: Path, env: dict[str, str]) -> procs.Measured:
    with source.open("rb") as handle:
        return procs.run(command, env=env, stdin=handle)


def meltano_figures(
    work: Path, env: dict[str, str], big: sc.SandboxProcess, wanted: list[str]
) -> list[Figure]:
    """`meltano run tap-optouts target-optouts` on the big list: with the ledger off
    (`meltano`), with a new SQLite ledger (`meltano+ledger`), and again right after on the same
    sandbox data and ledger (`meltano+ledger:again`: everything known, no write request)."""
    meltano = sc.meltano_executable()
    install = work / "meltano-0"
    install.mkdir()
    print("meltano install tap-optouts target-optouts ...", flush=True)
    subprocess.run(
        [meltano, "install", "tap-optouts", "target-optouts"],
        cwd=sc.ROOT,
        env=sc.meltano_env(env, big, install, batch=False),
        check=True,
        capture_output=True,
    )
    config = write_json(work / "tap-big.json", sc.tap_config(big, "optizmo"))
    recorded = work / "recorded-big.jsonl"
    count = record(cli("tap-optouts", config), env, recorded)
    print(f"recorded the big list: {count:,} records", flush=True)
    runs = iter(range(1, 10_000))
    last_ledger: list[Path] = []

    def runner(ledger: str) -> Callable[[Version], procs.Measured]:
        def run(version: Version) -> procs.Measured:
            folder = work / f"meltano-{next(runs)}"
            folder.mkdir()
            run_env = sc.meltano_env(version.env, big, folder, batch=version.batch)
            if ledger == "off":
                run_env["TARGET_OPTOUTS_LEDGER_URL"] = ""
            else:
                if ledger == "new" or not last_ledger:
                    last_ledger[:] = [folder / "ledger" / "ledger.sqlite"]
                run_env["TARGET_OPTOUTS_LEDGER_URL"] = f"sqlite:///{last_ledger[0]}"
            command = [meltano, "run", "tap-optouts", "target-optouts"]
            return procs.run(command, env=run_env, cwd=sc.ROOT)

        return run

    writes = "CheckMarket ceil(N / 1,000) + Optizmo a constant + tap 2 (+1 per empty list)"
    known = {
        "meltano": ("off", writes, True),
        "meltano+ledger": ("new", writes, True),
        "meltano+ledger:again": ("again", "tap 2 (+1 per empty list), no write", False),
    }
    return [
        Figure(
            name,
            count,
            runner(known[name][0]),
            ("write", recorded),
            big,
            known[name][1],
            reset=known[name][2],
        )
        for name in wanted
        if name in known
    ]


def measure(figures: list[Figure], rounds: int, work: Path) -> None:
    """Every figure once per round, in order (each version right after the other)."""
    for number in range(1, rounds + 1):
        for figure in figures:
            assert figure.version is not None
            if figure.reset:
                figure.sandbox.reset()
            before = figure.sandbox.stats()
            measured = figure.run(figure.version)
            requests = sc.request_delta(before, figure.sandbox.stats())
            log = work / f"{figure.title.replace(':', '-').replace(' ', '')}-round{number}.log"
            log.write_text(measured.stderr)
            if not measured.ok:
                print(measured.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{figure.title} failed in round {number}")
            ref = reference(*figure.reference, figure.version.env)
            figure.rounds.append(
                {
                    "wall": measured.wall,
                    "records_per_second": figure.records / measured.wall,
                    "peak_rss_mb": measured.peak_rss_mb,
                    "requests": requests,
                    "reference_records_per_second": ref["records"] / ref["wall"],
                    "reference_loop_records_per_second": ref["records"] / ref["seconds"],
                }
            )
            print(
                f"round {number} {figure.title:30} {measured.wall:7.2f}s "
                f"{figure.records / measured.wall:>9,.0f} rec/s  "
                f"requests {sum(requests.values()):,}  rss {measured.peak_rss_mb}",
                flush=True,
            )


def summarize(figure: Figure) -> dict[str, Any]:
    walls = [r["wall"] for r in figure.rounds]
    speeds = [r["records_per_second"] for r in figure.rounds]
    refs = [r["reference_records_per_second"] for r in figure.rounds]
    ratios = [r["records_per_second"] / r["reference_records_per_second"] for r in figure.rounds]
    loops = [
        r["records_per_second"] / r["reference_loop_records_per_second"] for r in figure.rounds
    ]
    requests = [sum(r["requests"].values()) for r in figure.rounds]
    peaks: dict[str, float] = {}
    for r in figure.rounds:
        for role, mb in r["peak_rss_mb"].items():
            peaks[role] = max(peaks.get(role, 0.0), mb)
    return {
        "records": figure.records,
        "wall_median": statistics.median(walls),
        "wall_min": min(walls),
        "wall_max": max(walls),
        "records_per_second_median": statistics.median(speeds),
        "records_per_second_min": min(speeds),
        "records_per_second_max": max(speeds),
        "reference": figure.reference[0],
        "reference_records_per_second_median": statistics.median(refs),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "loop_ratio_median": statistics.median(loops),
        "loop_ratio_min": min(loops),
        "loop_ratio_max": max(loops),
        "requests_median": statistics.median(requests),
        "requests_by_kind": figure.rounds[-1]["requests"],
        "requests_expected": figure.expected,
        "peak_rss_mb": peaks,
    }


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = (
        "| figure | records | wall s, median (min-max) | records/s, median (min-max) "
        "| reference records/s | ratio to reference | ratio to its loop alone "
        "| requests (budget) | peak RSS MB |"
    )
    lines = [head, "|" + "---|" * 9]
    for name, s in summary.items():
        rss = ", ".join(f"{role} {mb:.0f}" for role, mb in s["peak_rss_mb"].items())
        lines.append(
            f"| {name} | {s['records']:,} "
            f"| {s['wall_median']:.2f} ({s['wall_min']:.2f}-{s['wall_max']:.2f}) "
            f"| {s['records_per_second_median']:,.0f} ({s['records_per_second_min']:,.0f}-"
            f"{s['records_per_second_max']:,.0f}) "
            f"| {s['reference']} {s['reference_records_per_second_median']:,.0f} "
            f"| {s['ratio_median']:.3f} ({s['ratio_min']:.3f}-{s['ratio_max']:.3f}) "
            f"| {s['loop_ratio_median']:.3f} ({s['loop_ratio_min']:.3f}-"
            f"{s['loop_ratio_max']:.3f}) "
            f"| {s['requests_median']:,.0f} ({s['requests_expected']}) | {rss} |"
        )
    return "\n".join(lines)


# The performance budget (2 cores, rate limits off); see README.md.
TAP_RECORDS_PER_SECOND = 60_000
TAP_RATIO = 0.4
TARGET_RECORDS_PER_SECOND = 100_000  # into CheckMarket
MELTANO_WALL_SECONDS = 20.0
LEDGER_OVERHEAD = 0.15  # the ledger's cost on the meltano run
WRITE_KINDS = ("checkmarket POST", "slicktext POST", "optizmo-collect POST", "optizmo PUT")
PEAK_RSS_MB = 150.0
# Requests an Optizmo download or bulk upload may make, whatever its size (prepare, polls,
# the file; prepare-upload, PUT, status polls).
OPTIZMO_CONSTANT = 12


def budget(summary: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """Each budget line this run measured: (what, measured, met), from the medians."""
    rows: list[tuple[str, str, bool]] = []
    for name, s in summary.items():
        if name.endswith("(before)"):
            continue
        n, kinds = s["records"], s["requests_by_kind"]
        total = sum(kinds.values())
        optizmo = sum(v for k, v in kinds.items() if k.startswith("optizmo"))
        speed, ratio = s["records_per_second_median"], s["ratio_median"]
        if name.startswith("tap:"):
            rows.append(
                (
                    f"{name}: >= {TAP_RECORDS_PER_SECOND:,} records/s and >= {TAP_RATIO} x "
                    "the orjson writer",
                    f"{speed:,.0f}/s, x{ratio:.3f}",
                    speed >= TAP_RECORDS_PER_SECOND and ratio >= TAP_RATIO,
                )
            )
        source = name.removeprefix("tap:")
        if source in ("checkmarket", "slicktext"):  # one listing each: pages are exact
            kind, cap = f"{source} GET", PAGE_CAPS[source]
            rows.append(
                (
                    f"{name}: ceil(N / {cap:,}) pages",
                    f"{kinds.get(kind, 0):,}",
                    kinds == {kind: math.ceil(n / cap)},
                )
            )
        if name == "tap:optizmo":
            rows.append(
                (f"{name}: prepare + polls + the file", f"{total}", total <= OPTIZMO_CONSTANT)
            )
        if name == "target:checkmarket":
            rows.append(
                (
                    f"{name}: >= {TARGET_RECORDS_PER_SECOND:,} records/s",
                    f"{speed:,.0f}/s (x{ratio:.3f} the orjson reader)",
                    speed >= TARGET_RECORDS_PER_SECOND,
                )
            )
        if name in ("target:checkmarket", "pipe", "meltano", "meltano+ledger"):
            posts = kinds.get("checkmarket POST", 0)
            rows.append(
                (
                    f"{name}: ceil(N / 1,000) CheckMarket POSTs",
                    f"{posts:,}",
                    posts == math.ceil(n / 1000),
                )
            )
        if name in ("target:optizmo", "pipe", "meltano", "meltano+ledger"):
            rows.append(
                (
                    f"{name}: Optizmo requests a constant (<= {OPTIZMO_CONSTANT})",
                    f"{optizmo}",
                    optizmo <= OPTIZMO_CONSTANT,
                )
            )
        if name == "target:slicktext":
            rows.append((f"{name}: 1 request per opt-out", f"{total / n:.4f}", total <= n))
        if name == "target:slicktext-v2":
            rows.append(
                (f"{name}: <= 1.01 requests per opt-out", f"{total / n:.4f}", total <= 1.01 * n)
            )
        if name == "meltano+ledger" and "meltano" in summary:
            off, on = summary["meltano"]["wall_median"], s["wall_median"]
            rows.append(
                (
                    f"meltano run with the ledger (SQLite) within {LEDGER_OVERHEAD:.0%} of "
                    "the same run without it",
                    f"{on:.2f} s vs {off:.2f} s (x{on / off:.3f})",
                    on <= (1 + LEDGER_OVERHEAD) * off,
                )
            )
        if name == "meltano+ledger:again":
            writes = sum(v for k, v in kinds.items() if k in WRITE_KINDS)
            rows.append(
                (
                    f"meltano run again, {n:,} known opt-outs: no write request",
                    f"{writes} writes, {s['wall_median']:.2f} s",
                    writes == 0,
                )
            )
        if name.startswith("meltano"):
            for role in ("tap-optouts", "target-optouts"):
                mb = s["peak_rss_mb"].get(role, 0.0)
                if name != "meltano":
                    rows.append(
                        (
                            f"{name}, {n:,} rows: {role} peak RSS <= {PEAK_RSS_MB:.0f} MB",
                            f"{mb:.0f} MB",
                            mb <= PEAK_RSS_MB,
                        )
                    )
        if name == "meltano":
            wall = s["wall_median"]
            rows.append(
                (
                    f"meltano run, {n:,} opt-outs: <= {MELTANO_WALL_SECONDS:.0f} s",
                    f"{wall:.2f} s",
                    wall <= MELTANO_WALL_SECONDS,
                )
            )
            for role in ("tap-optouts", "target-optouts"):
                mb = s["peak_rss_mb"].get(role, 0.0)
                rows.append(
                    (
                        f"meltano, {n:,} rows: {role} peak RSS <= {PEAK_RSS_MB:.0f} MB",
                        f"{mb:.0f} MB",
                        mb <= PEAK_RSS_MB,
                    )
                )
    return rows


def budget_table(rows: list[tuple[str, str, bool]]) -> str:
    lines = ["| budget | measured (median) | met |", "|---|---|---|"]
    lines += [f"| {what} | {measured} | {'yes' if met else 'NO'} |" for what, measured, met in rows]
    return "\n".join(lines)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200_000, help="opt-outs per list")
    parser.add_argument("--big", type=int, default=1_000_000, help="the meltano run's list")
    parser.add_argument("--slicktext-size", type=int, default=10_000, help="target:slicktext*")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--figures", default=",".join(FIGURES), help="comma separated")
    parser.add_argument(
        "--no-batch",
        dest="batch",
        action="store_false",
        help="meltano: RECORD messages only (no batch_config)",
    )
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="also measure the connectors of an older checkout at PATH (its PYTHONPATH), "
        "in the same rounds, as the version 'before'; not the meltano figures, whose plugins "
        "Meltano starts without PYTHONPATH",
    )
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    args = parser.parse_args(argv)
    args.figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    work = RESULTS / f"{stamp}{'-' + args.label if args.label else ''}"
    work.mkdir(parents=True)
    versions = [Version("", child_env(None), args.batch)]
    if args.baseline:
        versions.insert(0, Version("before", child_env(args.baseline), args.batch))
    signal.signal(signal.SIGTERM, _interrupted)  # stop the sandboxes (finally) on SIGTERM too
    for version in versions:  # warm-up: bytecode caches written, imports cached by the OS
        for name in ("tap-optouts", "target-optouts"):
            command = [str(sc.VENV_BIN / name), "--about"]
            subprocess.run(command, env=version.env, capture_output=True, check=False)
    figures: list[Figure] = []
    try:
        templates = build(args, work, versions[-1].env)
        # Meltano drops PYTHONPATH from its plugins' environment: a baseline's meltano figures
        # would measure the working tree again, so they are left out.
        figures = [
            replace(t, version=v, rounds=[])
            for t in templates
            for v in versions
            if not (v.label == "before" and t.name.startswith("meltano"))
        ]
        measure(figures, args.rounds, work)
    finally:
        sc.stop_all()
    summary = {f.title: summarize(f) for f in figures}
    verdicts = budget(summary)
    report = {
        "label": args.label,
        "started": stamp,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "size": args.size,
        "big": args.big,
        "rounds": args.rounds,
        "versions": {v.label or "current": {"batch": v.batch} for v in versions},
        "baseline": args.baseline,
        "cpus": os.cpu_count(),
        "summary": summary,
        "budget": [{"budget": w, "measured": m, "met": ok} for w, m, ok in verdicts],
        "rounds_raw": {f.title: f.rounds for f in figures},
    }
    out = write_json(work / "results.json", report)
    print()
    print(table(summary))
    print()
    print(budget_table(verdicts))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
