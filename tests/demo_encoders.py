"""The check behind issue 16's proof that the demo learns with a CLIP- or a DINOv2-architecture encoder trained
from scratch. Each encoder's run (5-6 minutes) is a test file of its own (test_demo_clip.py, test_demo_dinov2.py),
so that pytest-xdist (`--dist loadfile`) runs the two on different workers instead of one after the other."""

from __future__ import annotations

import json
from pathlib import Path

from mmv.demo import DemoConfig, run_demo

MODEL_TYPES = {"clip": "clip_vision_model", "dinov2": "dinov2_with_registers"}


def check_the_demo_learns_above_80_percent(tmp_path: Path, encoder: str, minutes: float) -> None:
    config = DemoConfig(encoder=encoder, minutes=minutes, seed=0)
    result = run_demo(tmp_path / "demo", config, say=lambda _: None)
    assert result.eval["evaluated"] == 300
    assert result.eval["accuracy"] > 0.8, result.by_kind
    # the encoder trained is the family asked for
    vision = json.loads((result.out / "sft" / "vision" / "config.json").read_text())
    assert vision["model_type"] == MODEL_TYPES[encoder]
