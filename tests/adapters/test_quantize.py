"""`--qlora`: adapters over a base held in 4-bit NF4 by bitsandbytes, which runs on the CPU here and on CUDA; where
it cannot run (not installed, another device) one sentence says so and the run exits 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mmv.adapters.quantize import check_qlora, quantized_numel
from mmv.errors import MmvError
from tests.adapters.conftest import rows, train_lora
from tests.adapters.test_training import lora_args, lora_trainer
from tests.conftest import one_thread
from tests.train.helpers import VLM_PTH, env, read_metrics, write_parquet

bnb = pytest.importorskip("bitsandbytes")


def four_bit_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if getattr(p, "quant_state", None) is not None}


@pytest.mark.slow
def test_adapters_learn_over_a_4bit_base_that_stays_bit_identical(tmp_path):
    trainer = lora_trainer(tmp_path, qlora=True, epochs=10)
    layers = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 3 * 7  # every linear layer of the 3 blocks, nothing else (the encoder keeps its precision)
    assert quantized_numel(trainer.model) == sum(m.in_features * m.out_features for m in layers)
    before = four_bit_weights(trainer.model)
    with one_thread():
        result = trainer.fit()
    assert result.history[-1] < 0.75 * result.history[0], result.history
    after = four_bit_weights(trainer.model)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert all(p.dtype == torch.uint8 for p in after.values())  # still packed 4-bit, never dequantised in place
    trained = dict(trainer.model.named_parameters())
    assert set(trainer.names) == {n for n in trained if "lora_" in n or n.startswith("vision_proj.")}


def test_a_qlora_run_keeps_a_full_precision_adapter_that_loads_on_its_base(tmp_path):
    from mmv.adapters.files import read_adapter
    from mmv.loading import load_model

    data = write_parquet(tmp_path / "data.parquet", rows())
    train_lora(tmp_path / "run", data, qlora=True, max_steps=3)
    assert read_metrics(tmp_path / "run")[-1]["step"] == 3
    adapter = read_adapter(tmp_path / "run")
    assert all(t.dtype == torch.float32 for t in (*adapter.lora.values(), *adapter.projector.values()))
    merged = load_model(tmp_path / "run", device="cpu", dtype="float32").model
    q = "model.layers.0.self_attn.q_proj.weight"
    base = torch.load(VLM_PTH, map_location="cpu", weights_only=True)[q].float()
    merged_q = merged.state_dict()[q]
    lora_a, lora_b = (adapter.lora[f"model.layers.0.self_attn.q_proj.lora_{ab}.weight"] for ab in "AB")
    update = adapter.config.lora_alpha / adapter.config.r * lora_b @ lora_a
    assert update.abs().max() > 1e-3  # it learned something
    # merged into the original full-precision weights, not into their 4-bit rounding
    torch.testing.assert_close(merged_q, base + update, atol=1e-6, rtol=0)


def test_a_device_bitsandbytes_cannot_run_on_is_refused_in_one_sentence():
    with pytest.raises(
        MmvError, match=r"^QLoRA keeps the base in 4-bit with bitsandbytes, whose kernels run on "
    ) as refused:
        check_qlora(torch.device("mps"))
    assert refused.value.options == ("qlora", "device")


WITHOUT_BITSANDBYTES = """
import sys
sys.modules["bitsandbytes"] = None  # what an install without the qlora extra sees: import fails
from mmv.cli.app import main
sys.argv = ["mmv", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_without_bitsandbytes_qlora_says_what_to_install(tmp_path):
    data = write_parquet(tmp_path / "data.parquet", rows(4))
    args = [*lora_args(data, tmp_path / "run"), "--init", str(VLM_PTH), "--lora", "4", "--qlora", "--max-steps", "1"]
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_BITSANDBYTES, *args], env=env(), capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        "error: QLoRA needs bitsandbytes, which is not installed: pip install 'mmv[qlora]' (option: --qlora)"
    ), lines
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA on CUDA needs a CUDA device")
def test_qlora_trains_on_cuda(tmp_path):
    data = write_parquet(tmp_path / "data.parquet", rows())
    train_lora(tmp_path / "run", data, qlora=True, device="cuda", max_steps=6)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert len(losses) == 6 and losses[-1] < losses[0], losses
