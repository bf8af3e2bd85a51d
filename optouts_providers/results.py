"""What a write to a provider achieved, in the terms the target's summary reports."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WriteResult:
    """Outcome of writing a batch of opt-outs to one provider.

    `written`: accepted as new opt-outs; `already_present`: the provider said it already held
    them (where its API tells); `present`: which addresses it said so of, where it tells per
    address; `rejected`: (address, reason) the provider refused, isolated from the rest of the
    batch, which was still written.
    """

    written: int = 0
    already_present: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    present: list[str] = field(default_factory=list)

    def add(self, other: WriteResult) -> WriteResult:
        self.written += other.written
        self.already_present += other.already_present
        self.rejected.extend(other.rejected)
        self.present.extend(other.present)
        return self
