"""Every `mmv pretrain` / `mmv sft` option reaches TrainConfig under its own name, and help shows the real defaults."""

from __future__ import annotations

import dataclasses

import pytest

from mmv.train.config import STAGE_DEFAULTS, TrainConfig, stage_config
from tests.cli.conftest import option_names

# TrainConfig fields with no command-line option: the stage is the command, the rest are the reference's constants
NOT_OPTIONS = {"stage", "weight_decay", "grad_clip"}
VALUES = {
    "init": "none", "preset": "tiny", "experts_per_token": 2, "freeze": "none", "epochs": 3, "max_steps": 7,
    "batch_size": 5, "accum": 2, "lr": 0.125, "warmup": 4, "max_seq_len": 99, "save_every": 11, "keep": 3,
    "log_every": 6, "seed": 5, "dtype": "bfloat16", "device": "cpu", "num_workers": 1, "projector": "mlp",
    "merge": 2, "tiles": 4, "lora": 8, "lora_alpha": 24.0, "lora_dropout": 0.25, "lora_targets": "q,v,down",
    "feature_cache": "/data/features.bin", "cache_dtype": "float32",
}  # fmt: skip
SWITCHES = (
    "train_vision",
    "pack",
    "compile",
    "grad_checkpoint",
    "wandb",
    "tensorboard",
    "dora",
    "qlora",
    "cache_features",
)
# switches that cannot be on together in one config: each is checked in a config of its own
EXCLUSIVE = {"train_vision"}  # trains the encoder, which a feature cache replaces


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_every_option_reaches_the_config(cli, monkeypatch, stage):
    seen = {}
    monkeypatch.setattr("mmv.cli.train._train", lambda stage, given, *rest: seen.update(given))
    args = [stage, "--out", "run", "--data", "a.parquet"]
    for name, value in VALUES.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    args += [f"--{name.replace('_', '-')}" for name in SWITCHES]
    assert cli(args).exit_code == 0
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - NOT_OPTIONS
    assert set(seen) == fields  # nothing dropped, nothing unknown
    config = stage_config(stage, **{name: value for name, value in seen.items() if name not in EXCLUSIVE})
    assert all(getattr(config, name) == value for name, value in VALUES.items())
    assert all(getattr(config, name) is True for name in set(SWITCHES) - EXCLUSIVE)
    assert all(getattr(stage_config(stage, **{name: seen[name]}), name) is True for name in EXCLUSIVE)


def test_options_not_given_keep_the_stage_defaults(cli, monkeypatch):
    seen = {}
    monkeypatch.setattr("mmv.cli.train._train", lambda stage, given, *rest: seen.update(given))
    assert cli(["sft", "--out", "run", "--data", "a.parquet"]).exit_code == 0
    assert seen == {}
    assert stage_config("sft").lr == STAGE_DEFAULTS["sft"]["lr"]


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_help_shows_the_stage_defaults(cli, stage):
    text = " ".join(cli([stage, "--help"]).stdout.split())
    defaults = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)}, **STAGE_DEFAULTS[stage]}
    for name in ("epochs", "lr", "batch_size", "max_seq_len", "save_every", "keep", "log_every", "seed", "warmup"):
        assert f"[default: {defaults[name]}]" in text, name


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_every_setting_an_error_can_name_has_its_real_flag(stage):
    """Core errors name TrainConfig fields (mmv.errors): each needs a flag the command really has."""
    from mmv.cli.train import FLAGS

    fields = {field.name for field in dataclasses.fields(TrainConfig)} - NOT_OPTIONS
    assert fields <= FLAGS.keys(), fields - FLAGS.keys()
    assert {flag.split()[0] for flag in FLAGS.values()} <= option_names(stage)


def test_every_setting_a_convert_error_can_name_has_its_real_flag():
    from mmv.cli.convert import FLAGS

    assert {flag.split()[0] for flag in FLAGS.values()} <= option_names("convert")
