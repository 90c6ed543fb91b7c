"""`mmv sft --lora`: the adapters and the projector learn, every base tensor stays bit-identical, the run directory
keeps a peft adapter folder, checkpoints hold only what trains, and options that cannot work are refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from mmv.adapters.spec import ADAPTER_DIR, FILE_PREFIX, target_pattern
from mmv.adapters.training import prepare_model
from mmv.data.loader import DataSpec, TrainData
from mmv.train.build import build_model, training_inputs
from mmv.train.config import TrainConfig
from mmv.train.distributed import DistContext
from mmv.train.state import checkpoint_paths, load_resume
from mmv.train.trainer import Trainer
from tests.adapters.conftest import rows
from tests.conftest import TOKENIZER_DIR, load_fixture_model, one_thread
from tests.train.helpers import VISION_DIR, VLM_PTH, base_args, caption_row, run_cli, write_parquet

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def lora_trainer(tmp_path, **overrides) -> Trainer:
    data = write_parquet(tmp_path / "data.parquet", [caption_row(i) for i in range(8)])
    spec = DataSpec(
        files=[str(data)],
        tokenizer_dir=str(TOKENIZER_DIR),
        vision_dir=str(VISION_DIR),
        max_seq_len=160,
        random_system_prompt=False,
        drop_empty_think=False,
    )
    values = {"init": str(VLM_PTH), "lora": 8, "lr": 1e-2, "epochs": 20, "batch_size": 8, "save_every": 10**6}
    cfg = TrainConfig(stage="sft", device="cpu", log_every=10**6, **{**values, **overrides})
    model = build_model(training_inputs(cfg.init, str(VISION_DIR), str(TOKENIZER_DIR), cfg), cfg)
    prepare_model(model, cfg, CPU.device)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return Trainer(cfg, model, TrainData(spec), CPU, run_dir, ADAPTER_DIR)


@pytest.mark.slow
@pytest.mark.parametrize("dora", [False, True])
def test_adapters_and_projector_learn_and_the_base_stays_bit_identical(tmp_path, dora):
    base = {k: v.clone() for k, v in load_fixture_model("p32").named_parameters()}
    trainer = lora_trainer(tmp_path, dora=dora)
    with one_thread():
        result = trainer.fit()
    assert result.steps == 20 and result.history[-1] < 0.5 * result.history[0], result.history
    trained = dict(trainer.model.named_parameters())
    adapters = [n for n in trained if "lora_" in n]
    assert set(trainer.names) == {*adapters, *(n for n in trained if n.startswith("vision_proj."))}
    expected_layers = 3 * 7  # every linear layer of the 3 blocks
    assert len(adapters) == expected_layers * (3 if dora else 2)
    for name, before in base.items():
        after = trained.get(name) if name in trained else trained[name.replace(".weight", ".base_layer.weight")]
        if name.startswith("vision_proj."):
            assert not torch.equal(after, before), name
        else:
            assert torch.equal(after, before), name  # the LLM and the encoder: not one bit changed
    assert all(trained[n].abs().sum() > 0 for n in adapters if "lora_B" in n)  # B starts at zero: it learned


def test_checkpoints_hold_only_adapters_and_projector(lora_run):
    state = load_resume(checkpoint_paths(lora_run)[-1])
    assert state.model and all("lora_" in k or k.startswith("vision_proj.") for k in state.model)
    assert {k for k in state.model if "lora_" in k} == {
        f"model.layers.{i}.{part}.lora_{ab}.default.weight"
        for i in range(3)
        for part in (
            *("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
            *("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
        )
        for ab in "AB"
    }
    assert checkpoint_paths(lora_run)[-1].stat().st_size < VLM_PTH.stat().st_size / 4


def test_the_run_directory_keeps_a_peft_adapter_folder(lora_run):
    config = json.loads((lora_run / "config.json").read_text())
    assert config["weights"] == ADAPTER_DIR and config["train"]["lora"] == 4
    assert not list(lora_run.glob("*.pth")) and not list(lora_run.glob("*.safetensors"))
    adapter = lora_run / ADAPTER_DIR
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    peft_config = json.loads((adapter / "adapter_config.json").read_text())
    assert peft_config["peft_type"] == "LORA" and peft_config["task_type"] == "CAUSAL_LM"
    assert (peft_config["r"], peft_config["lora_alpha"], peft_config["use_dora"]) == (4, 8.0, False)
    assert peft_config["target_modules"] == target_pattern(("q", "k", "v", "o", "gate", "up", "down"))
    assert peft_config["modules_to_save"] == ["vision_proj"]
    assert peft_config["base_model_name_or_path"] == str(VLM_PTH)
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
    assert all(k.startswith(FILE_PREFIX) for k in keys)
    assert f"{FILE_PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert f"{FILE_PREFIX}vision_proj.mlp.1.weight" in keys  # the projector, as peft's modules_to_save


def test_the_pattern_adapts_the_blocks_only_never_the_encoder():
    import re

    pattern = re.compile(target_pattern(("q", "gate")))
    assert pattern.fullmatch("model.layers.11.self_attn.q_proj")
    assert pattern.fullmatch("model.layers.0.mlp.gate_proj")
    assert pattern.fullmatch("model.layers.0.mlp.experts.3.gate_proj")
    assert not pattern.fullmatch("model.layers.0.mlp.gate")  # a MoE router
    assert not pattern.fullmatch("model.layers.0.self_attn.k_proj")
    assert not pattern.fullmatch("vision_encoder.vision_model.encoder.layers.0.self_attn.q_proj")


def lora_args(data, out) -> list[str]:
    """The tiny sft command line of the training tests without its --freeze (which --lora replaces)."""
    args = base_args(data, out)
    at = args.index("--freeze")
    return args[:at] + args[at + 2 :]


def test_the_summary_shows_trainable_of_total_and_the_mode(tmp_path):
    data = write_parquet(tmp_path / "data.parquet", rows(4))
    result = run_cli([*lora_args(data, tmp_path / "run"), "--init", str(VLM_PTH), "--lora", "4", "--max-steps", "1"])
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("model:"))
    assert "trainable 19.8K of" in line and "LoRA rank 4 (alpha 8) on q,k,v,o,gate,up,down + the projector" in line


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--dora"], "the dora setting needs a LoRA adapter rank (option: --dora, --lora R)"),
        (["--qlora"], "the qlora setting needs a LoRA adapter rank (option: --qlora, --lora R)"),
        (
            ["--lora", "4", "--init", "none"],
            "starts from random ones; name a model to start from (option: --lora R, --init)",
        ),
        (
            ["--lora", "4", "--init", str(VLM_PTH), "--freeze", "none"],
            "with LoRA the adapters and the projector train instead (option: --freeze, --lora R)",
        ),
        (["--lora", "0", "--init", str(VLM_PTH)], "the LoRA adapter rank must be at least 1, got 0 (option: --lora R)"),
        (["--lora", "4", "--init", str(VLM_PTH), "--lora-targets", "q,x"], "got 'q,x' (option: --lora-targets LIST)"),
    ],
)
def test_options_that_cannot_work_are_refused(tmp_path, extra, phrase):
    data = write_parquet(tmp_path / "data.parquet", rows(4))
    result = run_cli([*lora_args(data, tmp_path / "run"), *extra])
    assert result.exit_code == 2 and phrase in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
