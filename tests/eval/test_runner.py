"""The evaluation report's summary."""

from __future__ import annotations

import math

from mmv.eval.runner import EvalReport


def test_a_loss_too_large_for_exp_has_an_infinite_perplexity():
    """Fuzz finding (tests/cli/test_fuzz.py, safetensors-49): a flipped exponent bit in a weight gave a mean answer
    loss over 709, and math.exp raised OverflowError after the whole evaluation."""
    report = EvalReport("exact", evaluated=2, answer_nll=2000.0, answer_tokens=2)
    assert report.summary()["mean_loss"] == 1000.0 and report.summary()["perplexity"] == math.inf
    assert EvalReport("exact", answer_nll=2.0, answer_tokens=2).summary()["perplexity"] == math.e
