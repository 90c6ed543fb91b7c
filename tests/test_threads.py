"""The thread count: --threads, else MMV_THREADS, else a default that follows the idle cores and the model's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from mmv.config import preset
from mmv.errors import MmvError
from mmv.model.vlm import MiniMindVLM
from mmv.quant.model import quantize_model
from mmv.threads import (
    ENV,
    SMALL_MODEL_WEIGHTS,
    busy_cores,
    default_threads,
    model_weights,
    requested_threads,
    set_threads,
)
from tests.cli.conftest import run_cli
from tests.conftest import REFERENCE, TOKENIZER_DIR


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_option_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(ENV, "3")
    assert requested_threads(2) == 2
    assert requested_threads(None) == 3
    monkeypatch.delenv(ENV)
    assert requested_threads(None) is None


@pytest.mark.parametrize("value", ["two", "-1", "1.5", "0"])
def test_a_bad_environment_value_is_one_clear_error(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(MmvError, match=ENV):
        requested_threads(None)


def test_a_small_model_decodes_on_one_thread_and_processes_share_the_cores():
    assert default_threads(weights=SMALL_MODEL_WEIGHTS - 1) == 1
    alone = default_threads(weights=SMALL_MODEL_WEIGHTS)
    assert 1 <= alone <= os.cpu_count()
    assert default_threads(processes=64) == 1


def test_a_busy_process_is_seen_as_a_busy_core():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert busy_cores(0.5) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()


def test_set_threads_applies_the_count():
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    assert set_threads(2) == 2 and torch.get_num_threads() == 2


def test_model_weights_counts_int8_layers_too():
    model = MiniMindVLM(preset("tiny")).eval()
    before = model_weights(model)
    assert before == sum(p.numel() for p in model.model.parameters())
    assert model_weights(quantize_model(model, vision=False)) == before


MODEL = ["--model", str(REFERENCE / "p32" / "model.pth"), "--tokenizer", str(TOKENIZER_DIR)]


def test_chat_reports_its_thread_count_and_refuses_a_bad_one(monkeypatch):
    result = run_cli(["--json", "chat", *MODEL, "--prompt", "hi", "--max-new-tokens", "2", "--threads", "1"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == 1
    monkeypatch.setenv(ENV, "many")
    result = run_cli(["chat", *MODEL, "--prompt", "hi"])
    assert result.exit_code == 2
    assert f"{ENV}='many' is not a whole number of threads" in result.stderr
    assert "Traceback" not in result.stderr
