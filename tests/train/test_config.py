"""Stage presets, option validation and the reference's weight file names."""

from __future__ import annotations

import pytest

from mmv.errors import MmvError
from mmv.train.config import TrainConfig, stage_config, weights_name


def test_stage_defaults_follow_the_reference():
    pre, sft = stage_config("pretrain"), stage_config("sft")
    assert (pre.init, pre.freeze, pre.lr, pre.batch_size, pre.max_seq_len) == ("llm", "projector", 4e-4, 16, 450)
    assert (sft.init, sft.freeze, sft.lr, sft.batch_size, sft.max_seq_len) == ("pretrain", "ends", 5e-6, 4, 768)
    assert pre.epochs == sft.epochs == 2 and pre.grad_clip == 1.0 and pre.warmup == 0


def test_given_options_override_and_none_keeps_the_default():
    cfg = stage_config("sft", lr=1e-4, batch_size=None, freeze="none")
    assert (cfg.lr, cfg.batch_size, cfg.freeze) == (1e-4, 4, "none")
    assert TrainConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg


@pytest.mark.parametrize(
    "bad",
    [
        {"freeze": "all"},
        {"dtype": "int8"},
        {"batch_size": 0},
        {"accum": 0},
        {"max_steps": 0},
        {"lr": -1.0},
        {"device": "tpu"},
    ],
)
def test_bad_options_are_one_sentence_errors(bad):
    with pytest.raises(MmvError):
        stage_config("sft", **bad)


def test_weights_names():
    assert weights_name("pretrain", 768, False) == "pretrain_vlm_768.pth"
    assert weights_name("sft", 768, True) == "sft_vlm_768_moe.pth"
