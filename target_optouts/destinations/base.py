"""A destination: one provider as a place to write opt-outs to (what it carries, what it
already wrote, what the ledger says it holds), and the errors a write ends in.

For each batch a destination drops the opt-outs that came from its own provider (with
`skip_origin`), those it cannot carry (a channel it lacks) and those it already wrote in this
run, then writes the rest synchronously. An address is remembered as written once the
provider accepted the call (or once kept back for `finish`, whose failure ends the run); a
failed write raises `DeliveryError`, so that the SDK never acknowledges the batch (no STATE
covers it). `send` may keep back what is better written all at once (a partial CheckMarket
batch, an Optizmo bulk upload) until `finish`. What was written is remembered in memory that
does not grow with the run (`seen.SeenAddresses`).
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from optouts_providers.redact import redact
from optouts_providers.results import WriteResult
from target_optouts.errors import RunError
from target_optouts.ledger.session import EVERY, LedgerSession, PartPlan, Target
from target_optouts.normalize import OptOut, origin_provider
from target_optouts.rejects import Rejects
from target_optouts.seen import SeenAddresses

logger = logging.getLogger("target-optouts")

# (channel, value): "email" / "phone" (E.164) / "md5" / "sms" (digits, no '+').
Address = tuple[str, str]
# Per channel, values in the order they came.
Values = dict[str, list[str]]


class NoDestinationError(ValueError):
    """No provider's credentials are set."""


class DeliveryError(RunError):
    """A provider did not accept a batch; the batch is not acknowledged (one ERROR line, exit
    1, no STATE past it)."""


@dataclass
class Counts:
    """Per destination. Opt-outs (records): received, skipped_origin, skipped_channel, duplicate.
    Addresses: known_present (held, as the ledger knows: not sent), sent, written,
    already_present, rejected, would_write (dry run)."""

    received: int = 0
    skipped_origin: int = 0
    skipped_channel: int = 0
    duplicate: int = 0
    known_present: int = 0
    sent: int = 0
    written: int = 0
    already_present: int = 0
    rejected: int = 0
    would_write: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Destination(abc.ABC):
    """One provider as a place to write opt-outs to."""

    provider: str = ""  # the origin name skip_origin compares with

    def __init__(self, *, rejects: Rejects, dry_run: bool, skip_origin: bool) -> None:
        self.rejects = rejects
        self.dry_run = dry_run
        self.skip_origin = skip_origin
        self.counts = Counts()
        self.done = SeenAddresses()
        self.lock = threading.Lock()
        self.ledger: LedgerSession | None = None
        self.ledger_targets: dict[str, Target] = {}  # per channel
        self.ledger_bits = 0

    def ledger_channels(self) -> dict[str, tuple[str, str]]:
        """Per channel: the ledger destination holding it and the kind of address it is."""
        return {channel: (self.provider, channel) for channel, _get in self.channels}

    def ledger_value(self, channel: str, value: str) -> str:
        """A channel's value as the ledger keys it (the normalised address)."""
        return value

    def attach_ledger(self, session: LedgerSession) -> None:
        self.ledger = session
        for channel, (name, kind) in self.ledger_channels().items():
            target = session.register(Target(name, kind, self.provider, self.skip_origin))
            self.ledger_targets[channel] = target
            self.ledger_bits |= target.bit

    @property
    def name(self) -> str:
        return self.provider

    @property
    @abc.abstractmethod
    def channels(self) -> list[tuple[str, Callable[[OptOut], str | None]]]:
        """What this destination carries: each channel with what reads its value from an
        opt-out (None: nothing for this channel)."""

    def addresses(self, optout: OptOut) -> list[Address]:
        """What of this opt-out the destination can carry (empty: nothing)."""
        return [(channel, v) for channel, get in self.channels if (v := get(optout)) is not None]

    @abc.abstractmethod
    def send(self, values: Values, stream: str) -> WriteResult:
        """Write new values (per channel); return only once the provider accepted them. Some
        may be kept back, for this stream, until `finish` (the result covers what was
        written)."""

    def finish(self, stream: str) -> WriteResult | None:
        """Write what `send` kept back for this stream; None when nothing was."""
        return None

    def stats(self) -> dict[str, Any]:
        """The client's call statistics, for the summary."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the client's connections."""

    def deliver(self, stream: str, optouts: Iterable[OptOut]) -> None:
        """Write these opt-outs; return once the provider accepted them all."""
        self.feed(stream, optouts)
        self.complete(stream)

    def feed(self, stream: str, optouts: Iterable[OptOut], plan: PartPlan | None = None) -> None:
        """Write a part of a batch (`send` may keep some back until `complete`). `plan`: what
        the ledger says each address still lacks (None: everything)."""
        with self.lock:
            pending = self._select(list(optouts), plan)
            if not pending:
                return
            count = sum(map(len, pending.values()))
            if self.dry_run:
                self.counts.would_write += count
            else:
                self.counts.sent += count
                what = f"writing {count} opt-out addresses"
                result = self._write(stream, what, lambda: self.send(pending, stream))
                self._count(stream, result)
            for channel, values in pending.items():
                self.done.extend(channel, values)

    def complete(self, stream: str) -> None:
        """Write what the batch's parts kept back; return once the provider accepted it."""
        with self.lock:
            result = self._write(stream, "writing the rest", lambda: self.finish(stream))
            if result is not None:
                self._count(stream, result)

    def _write(self, stream: str, what: str, call: Callable[[], WriteResult | None]) -> Any:
        try:
            return call()
        except Exception as exc:
            message = (
                f"{self.name}: {what} from stream {stream!r} failed; the batch is not "
                f"acknowledged: {redact(exc)}"
            )
            logger.debug("target-optouts: %s", message, exc_info=True)
            raise DeliveryError(f"target-optouts: {message}") from exc

    def _count(self, stream: str, result: WriteResult) -> None:
        self.counts.written += result.written
        self.counts.already_present += result.already_present
        self.counts.rejected += len(result.rejected)
        for value, reason in result.rejected:
            self.rejects.refused(stream, self.name, value, reason)
        if self.ledger is not None:
            self._tell_ledger(stream, result)

    def _tell_ledger(self, stream: str, result: WriteResult) -> None:
        session = self.ledger
        assert session is not None
        targets = list(self.ledger_targets.values())
        for value, reason in result.rejected:
            session.refused(stream, targets, value, reason)
        if result.present:
            session.already(stream, targets, result.present)
        session.answered(
            stream,
            self.ledger_bits,
            {
                "written": result.written,
                "already_present": result.already_present,
                "rejected": len(result.rejected),
            },
        )

    def _known(self, channel: str, picked: list[str], plan: PartPlan | None) -> list[str]:
        """`picked` less what the ledger knows this destination holds (counted)."""
        target = self.ledger_targets.get(channel)
        if plan is None or target is None or not picked:
            return picked
        wanted, bit = plan.pending.get(target.kind), target.bit
        if not wanted:
            return picked
        if channel == "sms":
            kept = [v for v in picked if wanted.get(self.ledger_value(channel, v), EVERY) & bit]
        else:
            kept = [v for v in picked if wanted.get(v, EVERY) & bit]
        self.counts.known_present += len(picked) - len(kept)
        return kept

    def _select(self, optouts: list[OptOut], plan: PartPlan | None = None) -> Values:
        """The values to write, per channel: each opt-out's, less its origin's (skip_origin),
        what this destination cannot carry and what it already wrote (or will, from an
        earlier opt-out of the part). Counted per opt-out. A part is read a channel at a time
        (the values of a channel in one pass), not an opt-out at a time: this runs for every
        opt-out and destination."""
        counts = self.counts
        counts.received += len(optouts)
        if self.skip_origin and optouts:
            own = {s for s in {o.stream for o in optouts} if origin_provider(s) == self.provider}
            if own:
                kept = [o for o in optouts if o.stream not in own]
                counts.skipped_origin += len(optouts) - len(kept)
                optouts = kept
        columns = [
            (channel, values)
            for channel, get in self.channels
            if any(values := list(map(get, optouts)))
        ]
        if len(columns) == 1:  # the common case: one value (at most) per opt-out
            channel, values = columns[0]
            present = values if None not in values else [v for v in values if v is not None]
            newer, older = self.done.known(channel)
            if newer or older:
                present = [v for v in present if v not in newer and v not in older]
            picked = list(dict.fromkeys(present))  # the first of each, in order
            counts.skipped_channel += len(optouts) - len(values) + values.count(None)
            counts.duplicate += len(values) - values.count(None) - len(picked)
            picked = self._known(channel, picked, plan)
            return {channel: picked} if picked else {}
        carried: set[int] = set()  # opt-outs with a value for some channel
        fresh: set[int] = set()  # ... and with a value not written before
        pending: Values = {}
        for channel, values in columns:
            newer, older = self.done.known(channel)
            picked: list[str] = []
            chosen: set[str] = set()
            for index, value in enumerate(values):
                if value is None:
                    continue
                carried.add(index)
                if value in newer or value in older or value in chosen:
                    continue
                chosen.add(value)
                picked.append(value)
                fresh.add(index)
            picked = self._known(channel, picked, plan)
            if picked:
                pending[channel] = picked
        counts.skipped_channel += len(optouts) - len(carried)
        counts.duplicate += len(carried) - len(fresh)
        return pending
