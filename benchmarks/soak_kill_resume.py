"""Kill-and-resume soak: `tap-optouts | target-optouts` killed with SIGKILL at random points,
then run again from the last STATE the target emitted, many times over.

    .venv/bin/python benchmarks/soak_kill_resume.py [--trials 20] [--seed N] [--size 60]
                                                    [--parallel 2] [--json results.json]

Each trial has its own sandbox (in this process, on loopback). Trials alternate: the tap killed
after a random number of the lines it wrote (the rest never reaches the target), the target
killed after a random number of its write requests (counted by the sandbox), sometimes after
its first STATE. The next run starts from the target's last STATE (none: from the start) and
is repeated until it succeeds (at most 3 runs). A trial passes when every provider then holds
the expected union (duplicates are allowed, losses are not) and no run left a credential, an
Authorization value or a signature in its output, logs or rejects. Exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pipeline_support import Kill, leaks, run_pipeline, signatures  # noqa: E402
from tests.sandbox_support import control, missing_from_union, running_sandbox  # noqa: E402

LATENCY_MS = 8  # writes take a little time, so that kills land inside batches


@dataclass
class Trial:
    number: int
    killed: str  # which process was killed ("-" when it finished before the kill point)
    point: str  # where
    relayed: int  # lines the killed run's target received
    states_before_kill: int
    runs_to_resume: int
    lost: int  # opt-outs missing from the expected union at the end
    leaked: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.lost == 0 and self.leaked == 0 and self.runs_to_resume > 0


def plan(number: int, rng: random.Random, lines: int, writes: int) -> Kill:
    if number % 2 == 0:
        return Kill("tap", after_lines=rng.randrange(1, lines))
    return Kill("target", after_writes=rng.randrange(1, writes), after_states=rng.choice([0, 1]))


def run_trial(number: int, kill: Kill, size: int) -> Trial:
    started = time.monotonic()
    with (
        running_sandbox(size=size, latency_ms=LATENCY_MS) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        before = control(server, "inspect")
        killed = run_pipeline(server, Path(tmp), kill=kill)
        runs, state, resumed = 0, killed.last_state, None
        while runs < 3:
            runs += 1
            resumed = run_pipeline(server, Path(tmp), state=state)
            if resumed.ok:
                break
            state = resumed.last_state or state
        missing = missing_from_union(before, control(server, "inspect"))
        secrets = signatures(server)
        leaked = leaks(killed.everything(), secrets)
        leaked += leaks(resumed.everything(), secrets) if resumed else []
    point = (
        f"after {kill.after_lines} lines"
        if kill.process == "tap"
        else f"after {kill.after_writes} writes, {kill.after_states} STATE"
    )
    return Trial(
        number=number,
        killed=killed.killed or "-",
        point=point,
        relayed=killed.relayed,
        states_before_kill=len(killed.states),
        runs_to_resume=runs if resumed and resumed.ok else 0,
        lost=sum(len(gone) for gone in missing.values()),
        leaked=len(leaked),
        seconds=round(time.monotonic() - started, 1),
    )


def expected_volume(size: int) -> tuple[int, int]:
    """(lines the tap writes, write requests the target makes) for an uninterrupted run."""
    with (
        running_sandbox(size=size) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        run = run_pipeline(server, Path(tmp))
        stats = control(server, "stats")
    if not run.ok:
        raise SystemExit("a reference run without faults failed:\n" + run.target_stderr[-3000:])
    writes = sum(
        stats.get(key, 0)
        for key in ("checkmarket POST", "slicktext POST", "optizmo-collect POST", "optizmo PUT")
    )
    return run.relayed, writes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--size", type=int, default=60)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the trials to this file")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    lines, writes = expected_volume(args.size)
    print(
        f"seed {args.seed}, {args.size} people: an uninterrupted run relays {lines} lines and "
        f"makes {writes} write requests"
    )
    kills = [plan(n, rng, lines, writes) for n in range(1, args.trials + 1)]
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        trials = list(
            pool.map(run_trial, range(1, args.trials + 1), kills, [args.size] * len(kills))
        )
    header = f"{'#':>3} {'killed':7} {'kill point':30} {'relayed':>7} {'STATEs':>6} "
    header += f"{'resume runs':>11} {'lost':>5} {'leaks':>5} {'s':>6}"
    print(header)
    for t in trials:
        print(
            f"{t.number:>3} {t.killed:7} {t.point:30} {t.relayed:>7} {t.states_before_kill:>6} "
            f"{t.runs_to_resume:>11} {t.lost:>5} {t.leaked:>5} {t.seconds:>6}"
        )
    passed = sum(t.passed for t in trials)
    kinds = {kind: sum(t.killed == kind for t in trials) for kind in ("tap", "target", "-")}
    print(
        f"{passed}/{len(trials)} trials passed (tap killed {kinds['tap']}, target killed "
        f"{kinds['target']}, finished before the kill point {kinds['-']}); "
        f"opt-outs lost: {sum(t.lost for t in trials)}; leaks: {sum(t.leaked for t in trials)}"
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(t) for t in trials], indent=2))
    return 0 if passed == len(trials) else 1


if __name__ == "__main__":
    sys.exit(main())
