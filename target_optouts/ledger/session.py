"""A target run's use of the ledger: what each part of a batch must be written to, and what the
ledger records once the providers accepted it.

For each part (`plan`), every address is hashed once and looked up in one statement: the
ledger answers, per address, the destinations that do not hold it yet, less the one its own
stream says holds it (an address in `checkmarket_optouts` is held by CheckMarket, in
`optizmo_optouts` by that Optizmo list). A destination writes only those (`pending`). The
part is staged with the batch (`stage.py`); when every destination has accepted the batch
(`completed`), the batch is merged into the ledger: what was pending becomes held, less what a
provider refused. A run that fails before that records it still pending, which the next run
writes again; one killed records nothing of the batch. The ledger therefore never claims an
address a provider did not accept.

Any error of the ledger's own during the run (a disk full, a database gone) turns it off for
the rest of the run, with one warning: the destinations then write everything, as without it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from target_optouts.ledger.stage import CLEAR_COLUMNS, KEY_COLUMNS, OWN_COLUMNS
from target_optouts.ledger.store import (
    GAP_CLEAR,
    GAP_OPTED_OUT_AT,
    Ledger,
    LedgerUnavailable,
    pack_ids,
)
from target_optouts.normalize import OptOut, origin_provider

logger = logging.getLogger("target-optouts")

KINDS = ("email", "phone", "md5")
EVERY = -1  # a mask with every bit: no knowledge, write
FLUSH_KEYS = 200_000  # evidence keys a batch keeps in memory before storing them
_KEY = KEY_COLUMNS
_KEY_CLEAR = KEY_COLUMNS + CLEAR_COLUMNS
_OWN = KEY_COLUMNS + CLEAR_COLUMNS + OWN_COLUMNS
_MD5 = re.compile(r"[0-9a-f]{32}")
_DIGITS = re.compile(r"\d{7,15}")


@dataclass
class PartPlan:
    """Per kind, per normalised value: the bits of the destinations to write it to."""

    pending: dict[str, dict[str, int]]

    def wanted(self, kind: str, value: str) -> int:
        return self.pending.get(kind, {}).get(value, EVERY)


@dataclass
class _Column:
    """A part's addresses of one kind: values, keys (`his`, `los`), origin times, and what
    their stream teaches: (origin destination id, bit held), one for all (`origin`) or one
    per address (`origins`: an Optizmo stream of several lists)."""

    kind: str
    values: list[str]
    his: list[int]
    los: list[int]
    ats: list[str | None]
    origin: tuple[Any, int]
    origins: list[tuple[Any, int]] | None
    carriable: int


@dataclass
class Target:
    """A destination's channel as the ledger sees it."""

    name: str  # ledger destination: checkmarket, slicktext, optizmo:<list id>
    kind: str  # email, phone (E.164) or md5
    provider: str  # the Destination's provider (skip_origin compares with it)
    skip_origin: bool
    bit: int = 0


@dataclass
class BatchState:
    id: int
    written: dict[int, array[int]] = field(default_factory=dict)  # per destination id
    seen: dict[int, array[int]] = field(default_factory=dict)
    refused: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # per bit
    reasons: dict[int, Counter[str]] = field(default_factory=dict)  # per destination id
    withheld: int = 0
    already: dict[int, set[int]] = field(default_factory=dict)  # per destination id
    answers: dict[int, dict[str, int]] = field(default_factory=dict)
    buffered: int = 0  # keys in `written` and `seen`, not yet stored

    def size(self) -> int:
        return sum(map(len, self.written.values())) + sum(map(len, self.seen.values()))


class LedgerSession:
    def __init__(self, ledger: Ledger, *, dry_run: bool, reconcile: bool = False) -> None:
        self.ledger = ledger
        self.dry_run = dry_run
        self.reconcile = reconcile
        self.run: int | None = None
        if not dry_run:
            self.run = ledger.start_run("reconcile" if reconcile else "sync")
        self.targets: dict[tuple[str, str], Target] = {}  # (ledger name, kind)
        self.batches: dict[str, BatchState] = {}  # per stream, the batch in flight
        self.enabled = True
        self._carriable: dict[tuple[str, str], int] = {}
        self._origins: dict[str, int] = {}  # ledger name -> bit, for destinations read
        self.seen_in_run: dict[int, set[int]] = {}  # reconcile: per destination id
        self.known_present = 0

    # -- set-up ----------------------------------------------------------------------------
    def register(self, target: Target) -> Target:
        """A destination channel, with its bit; kinds accumulate per ledger destination."""
        kinds = ",".join(
            sorted({t.kind for t in self.targets.values() if t.name == target.name} | {target.kind})
        )
        target.bit = self.ledger.destination(target.name, kinds).bit
        self.targets[(target.name, target.kind)] = target
        self._carriable.clear()
        return target

    # -- per part --------------------------------------------------------------------------
    def plan(self, stream: str, optouts: list[OptOut]) -> PartPlan | None:
        """Admit a part's addresses; None when the ledger is off (write everything)."""
        if not self.enabled or not optouts:
            return None
        try:
            return self._plan(stream, optouts)
        except (SQLAlchemyError, LedgerUnavailable, OSError) as exc:
            self._disable(exc)
            return None

    def _plan(self, stream: str, optouts: list[OptOut]) -> PartPlan:
        ledger = self.ledger
        origin = origin_provider(stream)
        columns = [c for kind in KINDS if (c := self._column(stream, origin, kind, optouts))]
        his = [hi for c in columns for hi in c.his]
        found = ledger.lookup(his)
        one_origin = all(c.origins is None for c in columns)
        if not found and not self.dry_run and one_origin and len(set(his)) == len(his):
            return self._plan_new(stream, columns)
        known = {hi: rest for hi, *rest in found}
        rows: dict[int, list[Any]] = {}
        clear = ledger.clear
        for c in columns:
            kind, carriable = c.kind, c.carriable
            for i, (hi, lo) in enumerate(zip(c.his, c.los, strict=True)):
                origin_id, learned = c.origin if c.origins is None else c.origins[i]
                row = rows.get(hi)
                if row is None:
                    value = c.values[i]
                    rows[hi] = [
                        hi,
                        lo,
                        kind,
                        value if clear else None,
                        stream,
                        origin_id,
                        c.ats[i],
                        learned,
                        carriable,
                    ]
                elif row[1] == lo:
                    row[7] |= learned
        wanted = self._wanted(stream, rows, known)
        pending: dict[str, dict[str, int]] = {}
        for c in columns:
            into = pending[c.kind] = {}
            for value, hi in zip(c.values, c.his, strict=True):
                into[value] = wanted[hi]
        return PartPlan(pending)

    def _column(
        self, stream: str, origin: str | None, kind: str, optouts: list[OptOut]
    ) -> _Column | None:
        """A part's addresses of one kind, hashed, with what their stream teaches."""
        getter = _GETTERS[kind]
        values = list(map(getter, optouts))
        if None in values:
            chosen = [o for o, v in zip(optouts, values, strict=True) if v is not None]
            if not chosen:
                return None
            values = [v for v in values if v is not None]
        else:
            chosen = optouts
        keys = self.ledger.keys.many(kind, values)  # type: ignore[arg-type]
        origin_of = self._origin_of(origin, kind)
        origins = None
        if origin == "optizmo" and len({o.list_id for o in chosen}) > 1:
            origins = list(map(origin_of, chosen))
        return _Column(
            kind,
            values,  # type: ignore[arg-type]
            [k[0] for k in keys],
            [k[1] for k in keys],
            [o.at for o in chosen],
            origin_of(chosen[0]),
            origins,
            self._carriable_bits(stream, origin, kind),
        )

    def _plan_new(self, stream: str, columns: list[_Column]) -> PartPlan:
        """A part none of whose addresses the ledger knows, each once, each kind from one
        origin (the common case: a new ledger, new opt-outs): one mask per kind, so the rows,
        the plan and the evidence are built column by column."""
        clear = self.ledger.clear
        now = time.time()
        batch = self._batch(stream)
        pending: dict[str, dict[str, int]] = {}
        seen: list[tuple[int, list[int]]] = []
        written: list[tuple[int, list[int]]] = []
        for c in columns:
            origin_id, learned = c.origin
            want = c.carriable & ~learned
            pending[c.kind] = dict.fromkeys(c.values, want)
            shared = (c.kind, stream, origin_id, now, learned, want)
            if clear:
                staged = list(zip(c.his, c.los, c.ats, c.values, strict=True))
                self.ledger.stage(batch.id, shared, _KEY_CLEAR, staged)
            else:
                self.ledger.stage(
                    batch.id, shared, _KEY, list(zip(c.his, c.los, c.ats, strict=True))
                )
            if learned:
                seen.append((learned, c.his))
            if want:
                written.append((want, c.his))
        self._keep(batch, seen, written)
        return PartPlan(pending)

    def _wanted(
        self, stream: str, rows: dict[int, list[Any]], known: dict[int, list[int]]
    ) -> dict[int, int]:
        """Per key, the destinations to write it to: those that can carry it, less what the
        ledger knows they hold and what its own stream says (EVERY for a key whose row is
        another address's). The batch stages what it learns and writes."""
        wanted: dict[int, int] = {}
        if self.dry_run:
            for hi, row in rows.items():
                found = known.get(hi)
                ok = found is not None and found[0] == row[1]
                wanted[hi] = ~(found[1] | row[7]) if ok else EVERY  # type: ignore[index]
            return wanted
        staged: list[tuple[Any, ...]] = []
        now = time.time()
        for hi, row in rows.items():
            found = known.get(hi)
            learned = row[7]
            if found is None:
                want = wanted[hi] = row[8] & ~learned
            elif found[0] != row[1]:
                wanted[hi] = EVERY
                continue
            else:
                present, gaps = found[1], found[2]
                want = wanted[hi] = row[8] & ~(learned | present)
                if not (
                    (learned | want) & ~present
                    or (gaps & GAP_OPTED_OUT_AT and row[6] is not None)
                    or (gaps & GAP_CLEAR and row[3] is not None)
                ):
                    continue  # nothing the ledger does not know already
            staged.append((hi, row[1], row[6], row[3], row[5], learned, want))
        batch = self._batch(stream)
        kinds = {row[2] for row in rows.values()}
        # Every row has its own origin and masks; a part of several kinds is staged per kind.
        for kind in sorted(kinds):
            mine = staged if len(kinds) == 1 else [r for r in staged if rows[r[0]][2] == kind]
            self.ledger.stage(batch.id, (kind, stream, None, now, None, None), _OWN, mine)
        self._remember(batch, rows, wanted)
        return wanted

    def _remember(
        self, batch: BatchState, rows: dict[int, list[Any]], wanted: dict[int, int]
    ) -> None:
        """What the batch's evidence will say: per destination, the keys written and seen
        (grouped by mask: a part's addresses share a few)."""
        seen: dict[int, list[int]] = {}
        written: dict[int, list[int]] = {}
        for hi, row in rows.items():
            if row[7]:
                seen.setdefault(row[7], []).append(hi)
            mine = wanted[hi]
            if mine and mine != EVERY:
                written.setdefault(mine, []).append(hi)
        self._keep(batch, list(seen.items()), list(written.items()))

    def _keep(
        self,
        batch: BatchState,
        seen: list[tuple[int, list[int]]],
        written: list[tuple[int, list[int]]],
    ) -> None:
        """Add keys (per mask) to the batch's evidence; stored once there are enough."""
        for groups, into in ((seen, batch.seen), (written, batch.written)):
            for mask, ids in groups:
                for bit_id in _bits(mask):
                    into.setdefault(bit_id, array("q")).extend(ids)
                    batch.buffered += len(ids)
        if batch.buffered >= FLUSH_KEYS:
            self._flush(batch)

    def _flush(self, batch: BatchState) -> None:
        """Store the batch's evidence so far (memory stays flat in the batch's size); it
        counts only once the batch is completed (readers ignore an open batch's rows)."""
        rows = [(d, "written", len(ids), None, pack_ids(ids)) for d, ids in batch.written.items()]
        rows += [(d, "seen", len(ids), None, pack_ids(ids)) for d, ids in batch.seen.items()]
        if rows:
            self.ledger.store_evidence(self.run or 0, batch.id, rows)
        if self.reconcile:
            for d, ids in batch.written.items():
                self.seen_in_run.setdefault(d, set()).update(ids)
            for d, ids in batch.seen.items():
                self.seen_in_run.setdefault(d, set()).update(ids)
        batch.written.clear()
        batch.seen.clear()
        batch.buffered = 0

    def _batch(self, stream: str) -> BatchState:
        batch = self.batches.get(stream)
        if batch is None:
            batch = self.batches[stream] = BatchState(
                self.ledger.start_batch(self.run or 0, stream)
            )
        return batch

    def _carriable_bits(self, stream: str, origin: str | None, kind: str) -> int:
        cached = self._carriable.get((stream, kind))
        if cached is None:
            cached = 0
            for target in self.targets.values():
                if target.kind == kind and not (target.skip_origin and origin == target.provider):
                    cached |= target.bit
            self._carriable[(stream, kind)] = cached
        return cached

    def _origin_of(self, origin: str | None, kind: str) -> Callable[[OptOut], tuple[Any, int]]:
        """What an opt-out of this stream and kind teaches: (origin destination id, the bit of
        the destination now known to hold it), per record for an Optizmo stream (its list)."""
        if origin is None:
            return lambda _optout: (None, 0)
        if origin != "optizmo":
            bit = self._origin_bit(origin)
            found = (bit.bit_length() - 1, 0 if origin == "slicktext" and kind != "phone" else bit)
            return lambda _optout: found
        cache: dict[str | None, tuple[Any, int]] = {}

        def of_list(optout: OptOut) -> tuple[Any, int]:
            found = cache.get(optout.list_id)
            if found is None:
                if optout.list_id:
                    bit = self._origin_bit(f"optizmo:{optout.list_id}")
                    found = (bit.bit_length() - 1, bit)
                else:
                    found = (None, 0)
                cache[optout.list_id] = found
            return found

        return of_list

    def _origin_bit(self, name: str) -> int:
        bit = self._origins.get(name)
        if bit is None:
            bit = self._origins[name] = self.ledger.destination(name).bit
        return bit

    # -- answers ---------------------------------------------------------------------------
    def refused(self, stream: str, targets: list[Target], value: str, reason: str) -> None:
        """An address a provider refused, as the destination sent it. It is traced to the
        address it stands for among what this batch wrote to one of `targets` (the
        destination's channels); one that cannot be traced withholds every write of the
        batch to those destinations from the ledger (none of them is then recorded held)."""
        batch = self.batches.get(stream)
        if batch is None or not self.enabled:
            return
        found = self._traced(batch, targets, value)
        if found is None:
            for target in targets:
                batch.withheld |= target.bit
            return
        target, hi, lo = found
        batch.refused.setdefault(target.bit, []).append((hi, lo))
        batch.reasons.setdefault(target.bit.bit_length() - 1, Counter())[reason[:200]] += 1

    def already(self, stream: str, targets: list[Target], values: list[str]) -> None:
        """Addresses the provider answered it already held (where it tells per address)."""
        batch = self.batches.get(stream)
        if batch is None or not self.enabled:
            return
        for value in values:
            found = self._traced(batch, targets, value)
            if found is not None:
                target, hi, _lo = found
                batch.already.setdefault(target.bit.bit_length() - 1, set()).add(hi)

    def _traced(
        self, batch: BatchState, targets: list[Target], value: str
    ) -> tuple[Target, int, int] | None:
        """The destination channel and key a value the provider named was sent as, in this
        batch; None when it was none of them."""
        for kind, candidate in _candidates(value):
            for target in targets:
                if target.kind != kind:
                    continue
                hi, lo = self.ledger.keys.of(kind, candidate)
                if self._sent(batch, target.bit.bit_length() - 1, target.bit, hi, lo):
                    return target, hi, lo
        return None

    def _sent(self, batch: BatchState, dest_id: int, bit: int, hi: int, lo: int) -> bool:
        """Whether this batch sent the key to the destination (kept in memory, or stored)."""
        if hi in batch.written.get(dest_id, ()):
            return True
        return self.ledger.pending_in(hi, lo, batch.id, bit)

    def answered(self, stream: str, bits: int, answer: dict[str, int]) -> None:
        batch = self.batches.get(stream)
        if batch is None:
            return
        for bit_id in _bits(bits):
            totals = batch.answers.setdefault(bit_id, {})
            for key, value in answer.items():
                totals[key] = totals.get(key, 0) + value

    def completing(self, stream: str) -> None:
        """The stream's batch is fed whole; its destinations now finish their writes. The
        ledger prepares the batch's merge meanwhile (records nothing yet)."""
        batch = self.batches.get(stream)
        if batch is None or not self.enabled or self.dry_run:
            return
        try:
            self.ledger.prepare_batch(batch.id)
        except (SQLAlchemyError, OSError, RuntimeError) as exc:
            self._disable(exc)

    def completed(self, stream: str) -> None:
        """Every destination accepted the stream's batch: record it."""
        batch = self.batches.pop(stream, None)
        if batch is None or not self.enabled or self.dry_run:
            return
        try:
            self._complete(batch)
        except (SQLAlchemyError, OSError) as exc:
            self._disable(exc)

    def _complete(self, batch: BatchState) -> None:
        evidence: list[tuple[int, str, int, str | None, bytes]] = []
        refused_ids = {
            bit.bit_length() - 1: {hi for hi, _lo in items} for bit, items in batch.refused.items()
        }
        for dest_id, ids in batch.written.items():
            if batch.withheld & (1 << dest_id):
                continue
            gone = refused_ids.get(dest_id, set()) | batch.already.get(dest_id, set())
            kept = [hi for hi in ids if hi not in gone] if gone else ids
            answer = json.dumps(batch.answers.get(dest_id) or {}, sort_keys=True)
            evidence.append((dest_id, "written", len(kept), answer, pack_ids(kept)))
            if self.reconcile:
                self.seen_in_run.setdefault(dest_id, set()).update(kept)
        for dest_id, held in batch.already.items():
            evidence.append((dest_id, "already", len(held), None, pack_ids(sorted(held))))
            if self.reconcile:
                self.seen_in_run.setdefault(dest_id, set()).update(held)
        for dest_id, ids in batch.seen.items():
            evidence.append((dest_id, "seen", len(ids), None, pack_ids(ids)))
            if self.reconcile:
                self.seen_in_run.setdefault(dest_id, set()).update(ids)
        for dest_id, ids in refused_ids.items():
            reasons = json.dumps(dict(batch.reasons.get(dest_id) or {}), sort_keys=True)
            evidence.append((dest_id, "rejected", len(ids), reasons, pack_ids(ids)))
        answers = {d: json.dumps(a, sort_keys=True) for d, a in batch.answers.items()}
        gone = {
            d: refused_ids.get(d, set()) | batch.already.get(d, set())
            for d in set(refused_ids) | set(batch.already)
        }
        withheld = [d for d in _bits(batch.withheld)]
        self.ledger.complete_batch(
            self.run or 0,
            batch.id,
            refused=batch.refused,
            withheld=batch.withheld,
            evidence=evidence,
            stored={"answers": answers, "gone": gone, "withheld": withheld},
        )

    def close(self, ok: bool) -> dict[str, Any]:
        """End the run; after a reconcile read, mark what each provider read no longer
        holds. Returns the ledger's part of the summary."""
        missing: dict[str, int] = {}
        if self.enabled and self.run is not None:
            try:
                if ok and self.reconcile:
                    for dest in self.ledger.destinations():
                        if dest.id in self.seen_in_run and dest.bit in self._origins.values():
                            count = self.ledger.mark_missing(
                                self.run, dest, self.seen_in_run[dest.id]
                            )
                            missing[dest.name] = count
                for batch in self.batches.values():
                    self.ledger.abandon_batch(self.run, batch.id)
                self.batches.clear()
                self.ledger.end_run(self.run, "ok" if ok else "failed")
            except (SQLAlchemyError, OSError) as exc:
                self._disable(exc)
        self.ledger.close()
        out: dict[str, Any] = {
            "url": self.ledger.where,
            "enabled": self.enabled,
            "run": self.run,
            "known_present": self.known_present,
        }
        if self.reconcile:
            out["missing"] = missing
        return out

    def _disable(self, exc: BaseException) -> None:
        if self.enabled:
            self.enabled = False
            logger.warning(
                "target-optouts: the ledger %s failed (%s: %s); it is off for the rest of "
                "this run, and every destination is written as without it",
                self.ledger.where,
                type(getattr(exc, "orig", None) or exc).__name__,
                str(getattr(exc, "orig", None) or exc).splitlines()[0][:200] if str(exc) else "",
            )


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


_GETTERS: dict[str, Callable[[OptOut], str | None]] = {
    "email": lambda o: o.email,
    "phone": lambda o: o.phone,
    "md5": lambda o: o.md5,
}


def _candidates(value: str) -> list[tuple[str, str]]:
    """The (kind, normalised value) a refused value may stand for, as the ledger keys it."""
    text = value.strip()
    out = [("email", text.lower()), ("phone", text), ("md5", text.lower())]
    if _DIGITS.fullmatch(text):
        out.append(("phone", "+" + text))  # an Optizmo SMS list's digits
    return out
