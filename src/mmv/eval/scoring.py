"""Comparing a generated answer with the reference."""

from __future__ import annotations

SCORING_METRICS = ("exact", "contains")


def normalise(text: str) -> str:
    return " ".join(text.split())


def is_correct(prediction: str, reference: str, metric: str) -> bool:
    """exact: equal up to whitespace; contains: the reference appears in the prediction, ignoring case."""
    if metric == "exact":
        return normalise(prediction) == normalise(reference)
    if metric == "contains":
        return normalise(reference).lower() in normalise(prediction).lower()
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(SCORING_METRICS)}")
