"""Counting the rows the loader skips, and stopping when too many of them are bad."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mmv.errors import MmvError

# Kinds of unusable rows. All but too_long mean broken data and count against `max_bad_fraction`; too_long is a
# length filter (an image run would not fit max_seq_len, or no supervised token is left).
BAD_KINDS = ("json", "schema", "markers", "image")
KINDS = (*BAD_KINDS, "too_long")
EXAMPLES = 5  # skipped rows remembered per process, for the final report and the error message


@dataclass
class Skipped:
    row: int  # global row number
    kind: str
    reason: str


@dataclass
class DataStats:
    """Counts over every `TrainData.batches` call of this process (one rank); ranks sum their `as_dict()`."""

    rows: int = 0  # sample positions consumed (used or skipped)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: list[Skipped] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return sum(self.counts[kind] for kind in BAD_KINDS)

    def add(self, skipped: Skipped) -> None:
        self.counts[skipped.kind] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(skipped)

    def as_dict(self) -> dict[str, int]:
        return {"rows": self.rows, **self.counts, "bad": self.bad}


class BadRowGuard:
    """Stops the epoch once more than `max_fraction` of this rank's rows are proven bad.

    The limit is a fraction of the rows this rank reads in a whole epoch, so the verdict never depends on where in the
    epoch the bad rows sit, and a dataset just under the limit is never stopped."""

    def __init__(self, max_fraction: float, epoch_rows: int, locate: Callable[[int], str]) -> None:
        self.max_fraction = max_fraction
        self.limit = max_fraction * epoch_rows
        self.epoch_rows = epoch_rows
        self.locate = locate
        self.bad = 0
        self.examples: list[Skipped] = []

    def add(self, skipped: Skipped) -> None:
        if skipped.kind not in BAD_KINDS:
            return
        self.bad += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(skipped)
        if self.bad > self.limit:
            named = "; ".join(f"{self.locate(s.row)} ({s.kind}: {s.reason})" for s in self.examples[:3])
            raise MmvError(
                f"more than {self.max_fraction:.1%} of the rows are bad "
                f"({self.bad} of {self.epoch_rows} in this epoch so far), e.g. {named}"
            )
