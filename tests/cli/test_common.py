"""The --json summary line is strict JSON: numbers that are not finite become null."""

from __future__ import annotations

import json
import math

from mmv.cli import common


def strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_infinite_and_nan_numbers_are_written_as_null(monkeypatch, capsys):
    monkeypatch.setattr(common.options, "json", True)
    common.emit_json({"perplexity": math.inf, "loss": math.nan, "per_file": [{"ppl": -math.inf, "n": 3}], "ok": 1.5})
    assert strict(capsys.readouterr().out) == {
        "perplexity": None,
        "loss": None,
        "per_file": [{"ppl": None, "n": 3}],
        "ok": 1.5,
    }


def test_nothing_is_written_without_json(monkeypatch, capsys):
    monkeypatch.setattr(common.options, "json", False)
    common.emit_json({"a": 1})
    assert capsys.readouterr().out == ""
