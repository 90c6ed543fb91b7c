"""The one skip counter: counts by kind, the first few rows named; and the guard that stops a mostly-bad epoch."""

from __future__ import annotations

import pytest

from mmv.data.rows import KINDS
from mmv.data.skips import BadRowGuard, Skips
from mmv.errors import MmvError


def test_counts_by_kind_and_names_the_first_few():
    skips = Skips(keep=2)
    skips.add("image", "row 5 of a.parquet", "image #1 is not an image file")
    skips.add("json", "row 9 of a.parquet", "conversations is not valid JSON")
    skips.add("image", "row 12 of b.parquet", "image #2 cannot be decoded")
    assert skips.counts == {"image": 2, "json": 1} and skips.total == 3 and skips.count(["json", "schema"]) == 1
    assert skips.examples == [
        "row 5 of a.parquet (image: image #1 is not an image file)",
        "row 9 of a.parquet (json: conversations is not valid JSON)",
    ]
    assert skips.describe() == "2 image, 1 json"
    every = Skips.of(KINDS)
    assert every.counts == dict.fromkeys(KINDS, 0) and every.describe() == "" and every.total == 0


def test_the_guard_counts_only_broken_rows_and_names_them_when_it_stops():
    guard = BadRowGuard(0.1, epoch_rows=20)  # up to 2 bad rows pass
    for row in range(5):
        guard.add("too_long", f"row {row} of a.parquet", "no assistant token")
    guard.add("json", "row 7 of a.parquet", "bad")
    guard.add("image", "row 8 of a.parquet", "broken")
    with pytest.raises(MmvError) as caught:
        guard.add("markers", "row 9 of a.parquet", "2 <image> marker(s) but 1 image(s)")
    assert str(caught.value) == (
        "more than 10.0% of the rows are bad (3 of 20 in this epoch so far), e.g. row 7 of a.parquet (json: bad); "
        "row 8 of a.parquet (image: broken); row 9 of a.parquet (markers: 2 <image> marker(s) but 1 image(s))"
    )
