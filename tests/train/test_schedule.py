"""The reference schedule lr * (0.1 + 0.45 * (1 + cos(pi t / T))) and the optional warmup."""

from __future__ import annotations

import math

import pytest

from mmv.train.schedule import lr_at, reference_lr


def test_reference_curve_endpoints_and_midpoint():
    assert reference_lr(4e-4, 0, 100) == pytest.approx(4e-4)
    assert reference_lr(4e-4, 50, 100) == pytest.approx(4e-4 * 0.55)
    assert reference_lr(4e-4, 100, 100) == pytest.approx(4e-5)
    for t in range(0, 101, 7):
        assert reference_lr(1.0, t, 100) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * t / 100)))


def test_warmup_ramps_then_follows_the_curve_over_the_rest():
    assert lr_at(1.0, 0, 100, warmup=10) == pytest.approx(0.1)
    assert lr_at(1.0, 9, 100, warmup=10) == pytest.approx(1.0)
    assert lr_at(1.0, 10, 100, warmup=10) == pytest.approx(1.0)
    assert lr_at(1.0, 100, 100, warmup=10) == pytest.approx(0.1)
    assert lr_at(1.0, 55, 100, warmup=10) == pytest.approx(reference_lr(1.0, 45, 90))


def test_fractional_steps_are_world_size_invariant():
    # 12 of 24 samples seen is the midpoint whether the global batch is 2 or 4
    assert lr_at(1.0, 12 / 2, 24 / 2) == pytest.approx(lr_at(1.0, 12 / 4, 24 / 4))
