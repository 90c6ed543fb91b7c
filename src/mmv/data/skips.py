"""Rows left out of a pass over a dataset: counted by kind, the first few named.

One type for every tool that reads rows (training, `mmv data check`, `mmv data from-llava`, `mmv eval`), so each
reports the same kinds in the same words: "row 5 of a.parquet (image: image #1 cannot be decoded: ...)".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mmv.data.rows import BAD_KINDS
from mmv.errors import MmvError

EXAMPLES = 5  # skipped rows named per report


@dataclass
class Skipped:
    """One skipped row as a training Batch carries it (named later, from its global row number)."""

    row: int
    kind: str
    reason: str


@dataclass
class Skips:
    counts: dict[str, int] = field(default_factory=dict)  # kind -> rows; kinds given up front start at 0
    examples: list[str] = field(default_factory=list)  # "WHERE (KIND: REASON)" for the first few
    keep: int = EXAMPLES

    @classmethod
    def of(cls, kinds: Iterable[str], keep: int = EXAMPLES) -> Skips:
        """Counts that list every one of `kinds`, zeros included (for reports with a fixed set of columns)."""
        return cls(dict.fromkeys(kinds, 0), keep=keep)

    def add(self, kind: str, where: str, reason: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.examples) < self.keep:
            self.examples.append(f"{where} ({kind}: {reason})")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, kinds: Iterable[str]) -> int:
        return sum(self.counts.get(kind, 0) for kind in kinds)

    def describe(self) -> str:
        """'2 json, 1 image' (kinds with a count only)."""
        return ", ".join(f"{count} {kind}" for kind, count in self.counts.items() if count)


class BadRowGuard:
    """Stops the epoch once more than `max_fraction` of this rank's rows are proven bad.

    The limit is a fraction of the rows this rank reads in a whole epoch, so the verdict never depends on where in the
    epoch the bad rows sit, and a dataset just under the limit is never stopped."""

    def __init__(self, max_fraction: float, epoch_rows: int) -> None:
        self.max_fraction = max_fraction
        self.limit = max_fraction * epoch_rows
        self.epoch_rows = epoch_rows
        self.bad = Skips()

    def add(self, kind: str, where: str, reason: str) -> None:
        if kind not in BAD_KINDS:
            return
        self.bad.add(kind, where, reason)
        if self.bad.total > self.limit:
            raise MmvError(
                f"more than {self.max_fraction:.1%} of the rows are bad "
                f"({self.bad.total} of {self.epoch_rows} in this epoch so far), e.g. {'; '.join(self.bad.examples[:3])}"
            )
